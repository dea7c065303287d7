"""SecretsDetector: every kind it knows, and look-alikes that are not secrets."""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from modelway.guardrails import secrets as secrets_module
from modelway.guardrails.secrets import KINDS, SecretsDetector, shannon_entropy

_RNG = random.Random(7)
_ALNUM = string.ascii_letters + string.digits


def rnd(n: int, alphabet: str = _ALNUM) -> str:
    while True:  # random keys mix cases and digits; make sure the sample does too
        s = "".join(_RNG.choice(alphabet) for _ in range(n))
        if alphabet != _ALNUM or (not s.isalpha() and not s.isdigit() and not s.islower()):
            return s


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': '42', 'iat': 1})}.{rnd(43)}"
PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\nZ1BjP5CE/Wm/Rr500P+rJ2eQ0eTmxS2ZN=="
AZURE_KEY = rnd(86, _ALNUM + "+/") + "=="
AWS_DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # the AWS documentation's example

POSITIVES: list[tuple[str, str, str]] = [  # (kind, text, the secret in it)
    ("openai_key", "key: {s}", "sk-" + rnd(48)),
    ("openai_key", "OPENAI_API_KEY={s}", "sk-proj-" + rnd(74) + "_" + rnd(40) + "-" + rnd(20)),
    ("openai_key", "use {s} for it", "sk-svcacct-" + rnd(60)),
    ("anthropic_key", "ANTHROPIC_API_KEY={s}", "sk-ant-api03-" + rnd(93) + "AA"),
    ("anthropic_key", "key {s}.", "sk-ant-admin01-" + rnd(93)),
    ("aws_access_key_id", "id {s} ok", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "id={s}", "ASIA" + rnd(16, string.ascii_uppercase + "234567")),
    ("aws_secret_access_key", "aws_secret_access_key = {s}", AWS_DOC_SECRET),
    ("aws_secret_access_key", "AWS creds: AKIA... and secret {s}", rnd(40, _ALNUM + "/+")),
    ("gcp_api_key", "https://maps.googleapis.com/x?key={s}&q=1", "AIza" + rnd(35)),
    ("gcp_service_account_key",
     '{{"type": "service_account", "private_key": "{s}", "client_email": "a@b.iam"}}',
     "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0B\\n-----END PRIVATE KEY-----\\n"),
    ("azure_storage_key",
     "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core.windows.net",
     AZURE_KEY),
    ("azure_storage_key", "AZURE_STORAGE_KEY: {s}", AZURE_KEY),
    ("azure_sas_signature", "https://a.blob.core.windows.net/c/b?sv=2022&sig={s}", rnd(43) + "%3D"),
    ("github_token", "token {s}", "ghp_" + rnd(36)),
    ("github_token", "GH_TOKEN={s}", "gho_" + rnd(36)),
    ("github_token", "token {s}", "ghs_" + rnd(36)),
    ("github_token", "pat {s}", "github_pat_" + rnd(22) + "_" + rnd(59)),
    ("slack_token", "SLACK_BOT_TOKEN={s}", "xoxb-123456789012-1234567890123-" + rnd(24)),
    ("slack_token", "user token {s}", "xoxp-123456789012-123456789012-123456789012-" + rnd(32)),
    ("slack_webhook", "post to {s} now", "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/"
     + rnd(24)),
    ("stripe_key", "stripe {s}", "sk_live_" + rnd(24)),
    ("stripe_key", "restricted {s}", "rk_live_" + rnd(99)),
    ("jwt", "Authorization: Bearer {s}", JWT),
    ("jwt", "cookie session={s};", JWT),
    ("private_key", "here:\n{s}\nthanks",
     f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"),
    ("private_key", "{s}", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n"
     "-----END OPENSSH PRIVATE KEY-----"),
    ("private_key", "{s}", f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}"),  # truncated
    ("connection_string_password", "DATABASE_URL=postgres://app:{s}@db.internal:5432/x",
     "s3cr3t-P4ss"),
    ("connection_string_password", "redis://:{s}@cache:6379/0", "hunter2hunter2"),
    ("connection_string_password", "mongodb+srv://admin:{s}@cluster0.x.mongodb.net", "Pa55w0rd"),
    ("bearer_token", "Authorization: Bearer {s}", rnd(40)),
    ("password", "password: {s}", "Tr0ub4dor&3"),
    ("password", 'DB_PASSWORD="{s}"', "correct-horse-9"),
    ("generic_secret", "api_key = {s}", rnd(32)),
    ("generic_secret", "{{'client_secret': '{s}'}}", rnd(40)),
    ("generic_secret", "export MY_SERVICE_TOKEN={s}", rnd(20) + "-" + rnd(20)),
    ("generic_secret", "apiKey: {s}", "0f8fad5b-d9cb-469f-a165-70867728950e"),
]  # fmt: skip


@pytest.fixture(scope="module")
def detector() -> SecretsDetector:
    return SecretsDetector()


@pytest.mark.parametrize(("kind", "template", "secret"), POSITIVES)
def test_each_kind(detector: SecretsDetector, kind: str, template: str, secret: str) -> None:
    text = template.format(s=secret)
    got = [(f.entity, f.rule, f.text_of(text)) for f in detector.find(text)]
    assert got == [("secret", kind, secret)]


def test_all_kinds_are_covered() -> None:
    assert {kind for kind, _, _ in POSITIVES} == KINDS


@pytest.mark.parametrize(
    "text",
    [
        "sk-this-is-not-a-real-key-example and sk-1234567890abcdef1234 and sk-learn",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixes the token refresh",
        "LGTM, but see a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 and 3f78685 before merging",
        "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "request id 550e8400-e29b-41d4-a716-446655440000 failed",
        "see /usr/local/lib/python3.11/site-packages/modelway/guardrails/secrets.py",
        "path = ./configuration/production/settings_override_2024.yaml",
        "tokenizer: meta-llama/Llama-3.1-8B-Instruct",
        "max_tokens: 1024, token_count = 123456789012345678901",
        "AKIA1234 and AIzaShort and ghp_short and xoxb-not-a-token",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc is a test key",
        "eyJhbGciOiJIUzI1NiJ9.notjson.sig and eyJub3RhbGciOjF9.eyJzdWIiOjF9.abcdefgh",
        "password: Required and password = ******** and password=${DB_PASSWORD}",
        "postgres://user:${DB_PASSWORD}@host/db and https://user:<password>@host",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
        "the secret to good software is_simplicity_and_patience_always",
        "ThisIsAVeryLongCamelCaseIdentifierName2 is a class",
        "Bearer of bad news",
        "password = getpass() and password: settings.db_password",
        '"integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17="',
        "image: ghcr.io/org/app@sha256:4bcff63911fcb4448bd4fdacec207030997caf25e9bea4045fa6c8c",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
        "role arn:aws:iam::123456789012:role/Admin in us-east-1",
    ],
)
def test_look_alikes(detector: SecretsDetector, text: str) -> None:
    assert [(f.rule, f.text_of(text)) for f in detector.find(text)] == []


def test_many_secrets_ordered(detector: SecretsDetector) -> None:
    gh, stripe = "ghp_" + rnd(36), "sk_live_" + rnd(24)
    text = f"a {gh} b {stripe} c postgres://u:pw123456@h/db"
    got = [(f.rule, f.text_of(text)) for f in detector.find(text)]
    assert got == [
        ("github_token", gh),
        ("stripe_key", stripe),
        ("connection_string_password", "pw123456"),
    ]


def test_kind_selection_and_entropy() -> None:
    only = SecretsDetector(kinds=["github_token"])
    assert only.find("sk_live_" + rnd(24)) == []
    with pytest.raises(ValueError, match="unknown secret kinds"):
        SecretsDetector(kinds=["nope"])
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0


def test_letters_only_keys_need_more_entropy(detector: SecretsDetector) -> None:
    key = "taQBOvToAOrAEnxpUfTbUtFwtWcfgrxouKGJbSmk"  # random, but without digits
    assert [f.rule for f in detector.find(f"aws_secret_access_key = {key}")] == [
        "aws_secret_access_key"
    ]
    assert [f.rule for f in detector.find(f"client_secret: {key}")] == ["generic_secret"]
    assert detector.find("secret_class = AbstractSingletonProxyFactoryBean") == []


def test_triggers_are_found_in_any_case_and_gate_only_their_rule() -> None:
    for rule in secrets_module.RULES:
        assert set(rule.triggers) <= set(secrets_module._TRIGGERS.words), rule.kind
    key = "AKIA" + rnd(16, string.ascii_uppercase + string.digits)
    aws = "aws_secret_access_key = " + rnd(40)
    found = SecretsDetector().find(f"Id {key}; {aws.upper()[:24]}{aws[24:]}")
    assert [f.rule for f in found] == ["aws_access_key_id", "aws_secret_access_key"]
    assert SecretsDetector().find(f"{key[:-1]} and a short run") == []
