"""Seeded, labelled texts for the guardrail benchmarks.

``pii_samples`` gives sentences with e-mails, phone numbers (many countries and formats),
card numbers, IBANs, US SSNs and IP addresses at known spans, mixed with look-alikes that
are not PII: order numbers, SKUs, versions, timestamps and dates, UUIDs, Luhn-invalid
16-digit runs and ISBNs. ``secret_samples`` does the same for credentials, with git SHAs,
hashes, UUIDs, paths, model names and test keys as look-alikes. Same seed, same texts.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from modelway.guardrails.pii import DEFAULT_PHONE_REGIONS, luhn_ok

OTHER_REGIONS = ("JP", "MX", "CH", "SE", "PL", "ZA", "SG", "CA", "IE", "AT")
IBAN_LOCALES = ("de_DE", "en_GB", "fr_FR", "es_ES", "it_IT", "nl_NL")
CARD_TYPES = ("visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb16", "diners")
_ALNUM = string.ascii_letters + string.digits
_BASE32 = string.ascii_uppercase + "234567"
_SLACK = "https://hooks.slack.com/services"
Piece = tuple[str, str, str | None]  # template with "{}", value, label (None: not sensitive)


@dataclass(frozen=True, slots=True)
class Label:
    entity: str  # a PII entity, or a secret kind for secret samples
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    labels: tuple[Label, ...]


class _Text:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.labels: list[Label] = []
        self.pos = 0

    def add(self, template: str, value: str = "", entity: str | None = None) -> None:
        before, _, after = template.partition("{}")
        for piece, label in ((before, None), (value, entity), (after, None)):
            if label is not None and piece:
                self.labels.append(Label(label, self.pos, self.pos + len(piece)))
            self.parts.append(piece)
            self.pos += len(piece)

    def sample(self) -> Sample:
        return Sample("".join(self.parts), tuple(self.labels))


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.locales = {loc: Faker(loc) for loc in IBAN_LOCALES}
        for i, f in enumerate(self.locales.values()):
            f.seed_instance(seed + i + 1)

    def digits(self, n: int) -> str:
        return str(self.rng.randint(1, 9)) + "".join(
            self.rng.choice("0123456789") for _ in range(n - 1)
        )

    def rand(self, n: int, alphabet: str = _ALNUM) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def text(self, pieces: list[Piece]) -> Sample:
        t = _Text()
        self.rng.shuffle(pieces)
        for template, value, entity in pieces:
            t.add(template + " ", value, entity)
        return t.sample()


class PIIGen(_Gen):
    def email(self) -> str:
        f = self.fake
        return self.rng.choice(
            [f.email(), f.free_email(), f.company_email(),
             f"{f.first_name()}.{f.last_name()}@{f.domain_name()}".lower(),
             f"{f.user_name()}+{f.word()}@{f.domain_name(2)}"]
        )  # fmt: skip

    def phone(self) -> str:
        national = self.rng.random() < 0.5
        region = self.rng.choice(
            DEFAULT_PHONE_REGIONS if national else (*OTHER_REGIONS, "US", "GB")
        )
        kind = self.rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None
        nsn = str(example.national_number)
        for _ in range(100):  # vary the last digits of the region's example number
            cut = len(nsn) - self.rng.randint(3, 5)
            tail = self.rand(len(nsn) - cut, string.digits)
            n = phonenumbers.parse(f"+{example.country_code}{nsn[:cut]}{tail}")
            if phonenumbers.is_valid_number(n):
                break
        else:
            n = example
        if national:
            if region == "US" and self.rng.random() < 0.5:  # 415-555-2671, 415.555.2671
                d, sep = str(n.national_number), self.rng.choice("-.")
                return f"{d[:3]}{sep}{d[3:6]}{sep}{d[6:]}"
            return phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)
        fmt = self.rng.choice([PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164])
        return phonenumbers.format_number(n, fmt)

    def card(self) -> str:
        kind = self.rng.choice(CARD_TYPES)
        digits = self.fake.credit_card_number(kind)
        while kind == "jcb16" and not 3528 <= int(digits[:4]) <= 3589:  # Faker uses all of 35xx
            digits = self.fake.credit_card_number(kind)
        style = self.rng.choice(["", " ", "-"])
        if not style:
            return digits
        if kind == "amex":
            return style.join([digits[:4], digits[4:10], digits[10:]])
        return style.join(digits[i : i + 4] for i in range(0, len(digits), 4))

    def iban(self) -> str:
        value = self.locales[self.rng.choice(IBAN_LOCALES)].iban()
        if self.rng.random() < 0.5:
            return value
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))

    def ssn(self) -> tuple[str, str]:
        area = self.rng.choice([a for a in range(1, 900) if a != 666])
        a, g, s = (
            f"{area:03d}",
            f"{self.rng.randint(1, 99):02d}",
            f"{self.rng.randint(1, 9999):04d}",
        )
        style = self.rng.choice(["-", " ", ""])
        bare = ["SSN: {}", "Her SSN is {}.", "social security no. {}"]
        shaped = ["My social security number is {}.", "SSN {} on file.", "{} is his SSN."]
        return style.join([a, g, s]), self.rng.choice(shaped if style else bare)

    def ip(self) -> str:
        f = self.fake
        value = self.rng.choice([f.ipv4_public(), f.ipv4_private(), f.ipv6(), f.ipv6()])
        return ipaddress.ip_address(value).compressed if self.rng.random() < 0.5 else value

    def pii(self) -> tuple[str, str, str]:
        name = self.fake.name()
        entity = self.rng.choice(["email", "phone", "credit_card", "iban", "us_ssn", "ip_address"])
        if entity == "us_ssn":
            value, template = self.ssn()
            return template, value, entity
        value = {"email": self.email, "phone": self.phone, "credit_card": self.card,
                 "iban": self.iban, "ip_address": self.ip}[entity]()  # fmt: skip
        templates = {
            "email": [f"Contact {name} at {{}}.", "Reply to {} before Friday.", f"{name} <{{}}>"],
            "phone": [f"You can reach {name} at {{}}.", "Call {} for details.", "Phone: {}",
                      f"{name} ({{}}) will join the meeting.", "Her mobile is {} and she texts."],
            "credit_card": ["Please charge my card {}, expiring 09/27.", "Card number: {}",
                            f"{name} paid with {{}} yesterday."],
            "iban": ["Send the refund to IBAN {}.", "Account {} at the main branch.", "IBAN: {}"],
            "ip_address": ["Login from {} at 10:42.", "The server {} is down again.",
                           "Client IP: {}", "Blocked {} after 5 failed attempts."],
        }  # fmt: skip
        return self.rng.choice(templates[entity]), value, entity

    def distractor(self) -> tuple[str, str, str | None]:
        r, f = self.rng, self.fake
        v4 = ".".join(str(r.randint(0, 20)) for _ in range(4))
        luhn_bad = self.digits(16)
        while luhn_ok(luhn_bad):
            luhn_bad = luhn_bad[:-1] + str((int(luhn_bad[-1]) + 1) % 10)
        ts = f.date_time_between("-5y")
        options = [
            ("Your order #{} has shipped.", self.digits(r.choice([8, 10, 12]))),
            ("Order {} is confirmed.", f"ORD-{ts.year}-{self.digits(6)}"),
            ("Order number {} is delayed.", f"{self.digits(3)}-{self.digits(3)}-{self.digits(4)}"),
            ("SKU {} is back in stock.", f"{self.digits(3)}-{self.digits(3)}-{self.digits(4)}"),
            ("Invoice {} is due.", f"INV-{self.digits(6)}"),
            ("Upgrade to v{} today.", v4),
            ("Running version {} of the agent.", v4),
            (
                "Release {} fixes the crash.",
                f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
            ),
            ("Logged at {}.", ts.isoformat()),
            ("Started {} UTC.", ts.strftime("%Y-%m-%d %H:%M:%S")),
            ("Due on {}.", ts.strftime(r.choice(["%d.%m.%Y", "%m/%d/%Y", "%Y%m%d"]))),
            ("Epoch {} in the log.", str(int(ts.timestamp()) * r.choice([1, 1000]))),
            ("Request {} failed.", f.uuid4()),
            ("Reference {} was rejected.", luhn_bad),
            ("Reference {} was rejected.", " ".join(luhn_bad[i : i + 4] for i in range(0, 16, 4))),
            ("ISBN {}", f.isbn13()),
            ("The book {} is out of print.", f.isbn13().replace("-", "")),
            ("ISBN-10: {}", f.isbn10()),
            ("Ticket {} was closed.", f"#{self.digits(7)}"),
        ]
        template, value = r.choice(options)
        return template, value, None

    def sample(self) -> Sample:
        r = self.rng
        pieces: list[Piece] = [self.pii() for _ in range(r.randint(1, 3))]
        pieces += [self.distractor() for _ in range(r.randint(0, 2))]
        pieces += [("{}", self.fake.sentence(), None) for _ in range(r.randint(0, 2))]
        return self.text(pieces)


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


class SecretGen(_Gen):
    def secret(self) -> tuple[str, str, str]:
        k = self.rand
        jwt = f"{_b64url({'alg': 'RS256', 'typ': 'JWT'})}.{_b64url({'sub': k(8)})}.{k(43)}"
        pem_label = self.rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        pem = "\n".join(k(64, _ALNUM + "+/") for _ in range(self.rng.randint(2, 6)))
        kinds: dict[str, tuple[str, str]] = {
            "openai_key": ("OPENAI_API_KEY={}", self.rng.choice(["sk-", "sk-proj-"]) + k(48)),
            "anthropic_key": ("use {} as the key", "sk-ant-api03-" + k(93) + "AA"),
            "aws_access_key_id": ("aws_access_key_id = {}", "AKIA" + k(16, _BASE32)),
            "aws_secret_access_key": ("aws_secret_access_key = {}", k(40, _ALNUM + "/+")),
            "gcp_api_key": ("maps key {} works", "AIza" + k(35)),
            "azure_storage_key": ("AccountName=prod;AccountKey={};EndpointSuffix=core.windows.net",
                                  k(86, _ALNUM + "+/") + "=="),
            "github_token": ("GITHUB_TOKEN={}", self.rng.choice(["ghp_", "gho_", "ghs_"]) + k(36)),
            "slack_token": ("slack bot {}", f"xoxb-{self.digits(12)}-{self.digits(13)}-{k(24)}"),
            "slack_webhook": ("POST to {}", f"{_SLACK}/T{k(8).upper()}/B{k(8).upper()}/{k(24)}"),
            "stripe_key": ("stripe.api_key = '{}'", "sk_live_" + k(24)),
            "jwt": ("Authorization: Bearer {}", jwt),
            "private_key": ("{}", f"-----BEGIN {pem_label}-----\n{pem}\n-----END {pem_label}-----"),
            "connection_string_password": (f"postgres://app:{{}}@{self.fake.domain_name()}", k(12)),
            "password": ("password: {}", k(10) + "!"),
            "generic_secret": ("client_secret = {}", k(32)),
        }  # fmt: skip
        kind = self.rng.choice(sorted(kinds))
        template, value = kinds[kind]
        return template, value, kind

    def lookalike(self) -> tuple[str, str, str | None]:
        f, k = self.fake, self.rand
        options = [
            ("LGTM after commit {} lands.", f.sha1()),
            ("Rebased onto {}, please re-review.", f.sha1()[:7]),
            ("sha256 {} matches.", f.sha256()),
            ("Request {} timed out.", f.uuid4()),
            ("See {} for the details.", f.file_path(depth=4)),
            ("tokenizer: {}", "meta-llama/Llama-3.1-8B-Instruct"),
            ("max_tokens = {}", str(self.rng.choice([256, 1024, 4096]))),
            ("We use {} for the classifier.", "sk-learn"),
            ("The docs show {} as the format.", "sk-xxxxxxxxxxxxxxxxxxxxxxxx"),
            ("Test with {} in staging.", "sk_test_" + k(24)),
            ("class {} handles it.", "".join(w.capitalize() for w in f.words(5))),
            ("password: {}", "<redacted>"),
            ("Set the api key to {}.", "${OPENAI_API_KEY}"),
            ("cache key {}", f.md5()[:12]),
        ]
        template, value = self.rng.choice(options)
        return template, value, None

    def sample(self) -> Sample:
        pieces: list[Piece] = [self.secret() for _ in range(self.rng.randint(0, 2))]
        pieces += [self.lookalike() for _ in range(self.rng.randint(1, 2))]
        pieces += [("{}", self.fake.sentence(), None)]
        return self.text(pieces)


def pii_samples(n: int, seed: int = 1234) -> list[Sample]:
    gen = PIIGen(seed)
    return [gen.sample() for _ in range(n)]


def secret_samples(n: int, seed: int = 1234) -> list[Sample]:
    gen = SecretGen(seed)
    return [gen.sample() for _ in range(n)]


def mixed_text(length: int, seed: int = 1234) -> str:
    """A text of ``length`` characters: PII and secret samples between plain sentences."""
    pii, sec, fake = PIIGen(seed), SecretGen(seed), Faker("en_US")
    fake.seed_instance(seed)
    makers: list[Callable[[], str]] = [lambda: pii.sample().text, lambda: sec.sample().text]
    makers += [lambda: fake.paragraph()] * 3
    parts: list[str] = []
    while sum(map(len, parts)) < length:
        parts.append(pii.rng.choice(makers)())
    return "".join(parts)[:length]
