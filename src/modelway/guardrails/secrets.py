"""Secrets detection: provider API keys, cloud credentials, tokens, private keys, passwords.

Every finding has entity "secret" and the kind in ``rule``. Fixed-format credentials
(``sk-ant-``, ``AKIA``, ``ghp_``, ``xoxb-``, ``AIza``, PEM blocks, JWTs, ...) are found
anywhere; shapeless ones (AWS secret access keys, Azure account keys, passwords, generic
high-entropy tokens) only in a secret-like context such as ``api_key = ...``. So git SHAs,
UUIDs, hashes and file paths in ordinary prose are not reported; a UUID or hash *assigned
to* a key/token/secret name is.

Dependency-free on purpose: detect-secrets scans files line by line through plugins and
reports line numbers, while redaction needs character spans; its useful part is ~20
regexes, which are re-expressed here (following its plugins and the providers' documented
formats) with validation where a format allows it (JWT header, randomness of key bodies).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from modelway.guardrails.findings import Finding
from modelway.guardrails.keywords import Keywords
from modelway.guardrails.long_tokens import has_long_token

DEFAULT_MIN_ENTROPY = 3.5  # bits per character, for context-only tokens of >= 20 chars
_LETTERS_ONLY_ENTROPY = 4.3

Check = Callable[[re.Match[str], str, float], bool]


def shannon_entropy(s: str) -> float:
    """Shannon entropy of ``s`` in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _mixed(v: str) -> bool:
    """Upper case, lower case and digits: how random keys look, unlike words or hex hashes."""
    return any(c.isupper() for c in v) and any(c.islower() for c in v) and _has_digit(v)


def _has_digit(v: str) -> bool:
    return any(c.isdigit() for c in v)


def _random_enough(v: str, min_entropy: float) -> bool:
    """Letters and digits at ``min_entropy`` or more, or mixed-case letters only at 4.3 or
    more (random keys reach ~4.6; CamelCase identifiers stay near 3.7-4.2)."""
    if _has_digit(v):
        return any(c.isalpha() for c in v) and shannon_entropy(v) >= min_entropy
    cased = any(c.isupper() for c in v) and any(c.islower() for c in v)
    return cased and shannon_entropy(v) >= max(min_entropy, _LETTERS_ONLY_ENTROPY)


_PLACEHOLDER = re.compile(
    r"(?i)\$\{?\w+\}?|<[^>]*>|\{\{?[^}]*\}?\}|%\(\w+\)s|([*x.•])\1*|"
    r"(?:your|my|the)?[_-]?(?:password|passwd|pass|pwd|secret|token|changeme|example|redacted)"
)
_PATH = re.compile(r"(?:[.~]{0,2}/|[A-Za-z]:\\|https?://)|.*\.[A-Za-z]{1,5}$")
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|key|keys|secret|secrets|token|tokens|auth|credentials?|password|"
    r"passwd|pwd|access_?key|private_?key|client_?secret|secret_?key|signature|sig|bearer)(?:_|$)"
)
_CODE = re.compile(r"[A-Za-z_][\w.]*[(\[].*|[a-z_]+(?:\.[A-Za-z_]+)+")  # getpass(), cfg.pw
_AWS_CONTEXT = re.compile(r"(?i)aws|secret[\s_-]?access|secret[\s_-]?key")


def _random_body(m: re.Match[str], text: str, min_entropy: float) -> bool:
    body = m.group("body")
    return _mixed(body) and shannon_entropy(body) >= 3.0


def _aws_secret(m: re.Match[str], text: str, min_entropy: float) -> bool:
    value = m.group(0)
    context = text[max(0, m.start() - 100) : m.start()]
    return _random_enough(value, 4.0) and bool(_AWS_CONTEXT.search(context))


def _b64json(part: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error):  # includes JSON and Unicode decode errors
        return None


def _jwt(m: re.Match[str], text: str, min_entropy: float) -> bool:
    head, claims, sig = m.group(0).split(".")
    header = _b64json(head)
    if not isinstance(header, dict) or "alg" not in header:
        return False
    if not isinstance(_b64json(claims), dict):
        return False
    return bool(sig) or str(header["alg"]).lower() == "none"


def _password(m: re.Match[str], text: str, min_entropy: float) -> bool:
    value = m.group("value")
    if _PLACEHOLDER.fullmatch(value) or _PATH.match(value) or _CODE.fullmatch(value):
        return False
    classes = sum(
        any(f(c) for c in value) for f in (str.islower, str.isupper, str.isdigit, _is_symbol)
    )
    return classes >= 2 and (_has_digit(value) or any(map(_is_symbol, value)))


def _is_symbol(c: str) -> bool:
    return not c.isalnum()


def _not_placeholder(m: re.Match[str], text: str, min_entropy: float) -> bool:
    return not _PLACEHOLDER.fullmatch(m.group("value"))


def _generic(m: re.Match[str], text: str, min_entropy: float) -> bool:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", m.group("name")).replace("-", "_")
    name = name.replace(".", "_").lower()
    value = m.group("value")
    if not _SECRET_NAME.search(name) or _PATH.match(value) or _PLACEHOLDER.fullmatch(value):
        return False
    parts = re.split(r"[/._-]", value)
    if len(parts) > 1 and max(map(len, parts)) <= 10:
        return False  # structured identifier such as "meta-llama/Llama-3.1-8B-Instruct"
    return _random_enough(value, min_entropy)


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    group: str | int = 0  # which part of the match is the secret
    check: Check | None = None
    # Lower-case substrings one of which every match contains: a text without any of them
    # skips the rule's regex scan (most texts hold no secret at all). One pass finds them
    # all (`_TRIGGERS`).
    triggers: tuple[str, ...] = ()
    # Every match lies in a run of at least this many characters without whitespace.
    min_run: int = 0


_PEM_LABEL = r"(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?"
# Order matters only for equal-length overlaps: the more specific rule comes first.
RULES: tuple[_Rule, ...] = (
    _Rule(
        "gcp_service_account_key",
        re.compile(r'"private_key"\s*:\s*"(?P<value>-----BEGIN ' + _PEM_LABEL + r'-----[^"]*)"'),
        "value",
        triggers=('"private_key"',),
    ),
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN " + _PEM_LABEL + r"-----"
            r"(?:[A-Za-z0-9+/=\s]|\\[rn]|(?:Proc-Type|DEK-Info|Comment):[^\n]*)*"
            r"(?:-----END " + _PEM_LABEL + r"-----)?"
        ),
        triggers=("-----begin ",),
    ),
    _Rule(
        "anthropic_key",
        re.compile(r"(?<![\w-])sk-ant-(?:[a-z]{3,8}\d{2}-)?(?P<body>[A-Za-z0-9_-]{32,})"),
        check=_random_body,
        triggers=("sk-ant-",),
    ),
    _Rule(
        "openai_key",
        re.compile(r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?(?P<body>[A-Za-z0-9_-]{20,})"),
        check=_random_body,
        triggers=("sk-",),
    ),
    _Rule(
        "aws_access_key_id",
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        triggers=("akia", "asia", "abia", "acca"),
    ),
    _Rule(
        "aws_secret_access_key",
        re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
        check=_aws_secret,
        min_run=40,
    ),
    _Rule(
        "gcp_api_key",
        re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"),
        triggers=("aiza",),
    ),
    _Rule(
        "azure_storage_key",
        re.compile(r"(?i:AccountKey|SharedAccessKey)=(?P<value>[A-Za-z0-9+/]{40,}={0,2})"),
        "value",
        triggers=("accountkey=", "sharedaccesskey="),
    ),
    _Rule(
        "azure_storage_key",
        re.compile(
            r"(?i:azure|storage|account)[\w .-]{0,30}(?i:key|secret)[\"']?\s*[:=]\s*[\"']?"
            r"(?P<value>[A-Za-z0-9+/]{86}==)"
        ),
        "value",
        triggers=("==",),
    ),
    _Rule(
        "azure_sas_signature",
        re.compile(r"[?&]sig=(?P<value>[A-Za-z0-9%+/=]{30,})"),
        "value",
        triggers=("sig=",),
    ),
    _Rule(
        "github_token",
        re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_\w{50,255})(?![\w-])"),
        triggers=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Rule(
        "slack_token",
        re.compile(r"(?<![\w-])xox[abposre]-\d{6,}-[A-Za-z0-9-]{10,}"),
        triggers=("xox",),
    ),
    _Rule(
        "slack_webhook",
        re.compile(
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"
        ),
        triggers=("hooks.slack.com",),
    ),
    _Rule(
        "stripe_key",
        re.compile(r"(?<![\w-])(?:sk|rk)_live_[A-Za-z0-9]{20,}(?![\w-])"),
        triggers=("_live_",),
    ),
    _Rule(
        "jwt",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        check=_jwt,
        triggers=("eyj",),
    ),
    _Rule(
        "connection_string_password",
        re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@?#]*:(?P<value>[^\s@/?#]+)@[^\s@/]+"),
        "value",
        _not_placeholder,
        triggers=("://",),
    ),
    _Rule(
        "bearer_token",
        re.compile(r"(?i:\bbearer)\s+(?P<body>[A-Za-z0-9_\-.~+/]{20,}=*)"),
        "body",
        _random_body,
        triggers=("bearer",),
    ),
    _Rule(
        "password",
        re.compile(
            r"(?i:(?<![A-Za-z])(?:password|passwd|passphrase|pwd)(?![A-Za-z]))[\"']?\s*"
            r"(?:=|:|=>)\s*[\"']?(?P<value>[^\s\"',;]{8,})"
        ),
        "value",
        _password,
        triggers=("password", "passwd", "passphrase", "pwd"),
    ),
    _Rule(
        "generic_secret",
        re.compile(
            r"(?<![\w.-])(?P<name>[A-Za-z_][\w.-]{0,40})[\"']?\s*(?:=|:|=>|:=)\s*[\"']?"
            r"(?P<value>[A-Za-z0-9_\-+/=.~]{20,})(?![A-Za-z0-9_\-+/=.~])"
        ),
        "value",
        _generic,
        # _generic requires a secret-like name (_SECRET_NAME): one of these words in it.
        triggers=("key", "secret", "token", "auth", "credential", "passw", "pwd", "sig", "bearer"),
    ),
)
KINDS = frozenset(rule.kind for rule in RULES)
_TRIGGERS = Keywords(t for rule in RULES for t in rule.triggers)


class SecretsDetector:
    """Finds credentials and secrets; each finding is ``Finding("secret", ..., rule=kind)``."""

    def __init__(
        self, kinds: Collection[str] | None = None, min_entropy: float = DEFAULT_MIN_ENTROPY
    ) -> None:
        if kinds is not None and (unknown := set(kinds) - KINDS):
            raise ValueError(f"unknown secret kinds: {sorted(unknown)}; known: {sorted(KINDS)}")
        self._rules = [r for r in RULES if kinds is None or r.kind in kinds]
        self._min_entropy = min_entropy

    def find(self, text: str) -> list[Finding]:
        """All findings in ``text``, non-overlapping (longest first), ordered by start."""
        found: list[tuple[int, Finding]] = []
        present = _TRIGGERS.present(text.lower())
        for order, rule in enumerate(self._rules):
            if rule.triggers and present.isdisjoint(rule.triggers):
                continue
            if rule.min_run and not has_long_token(text, rule.min_run):
                continue
            for m in rule.pattern.finditer(text):
                if rule.check is not None and not rule.check(m, text, self._min_entropy):
                    continue
                start, end = m.span(rule.group)
                end = start + len(text[start:end].rstrip())
                if end > start:
                    found.append((order, Finding("secret", start, end, rule=rule.kind)))
        kept: list[Finding] = []
        for _, f in sorted(found, key=lambda of: (of[1].start - of[1].end, of[0])):
            if all(f.end <= k.start or k.end <= f.start for k in kept):
                kept.append(f)
        return sorted(kept, key=lambda f: f.start)
