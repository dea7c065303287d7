"""Named rules for known prompt-injection and jailbreak families.

Families (the `rule` of a finding):

- `instruction_override`: "ignore all previous instructions", "disregard your rules",
  "new instructions:", in English and a few other languages;
- `persona_jailbreak`: DAN / "do anything now", developer mode, known jailbreak personas,
  "you are no longer bound by", "no ethical guidelines", "never refuse";
- `prompt_extraction`: "repeat your system prompt", "print the words above", "what were
  you told?";
- `delimiter_injection`: chat-template tokens and fake role headers (`<|im_start|>`,
  `[INST]`, `<<SYS>>`, `</s><s>`, "### system:", a code fence labelled `system`);
- `encoded_payload`: a base64 (or plain hex) token, `\\x` escapes, rot13 or reversed text
  whose decoding matches one of the families above.

Role-play on its own ("roleplay as a pirate", "you are Naruto") is no rule: the training
data labels it benign. A lone `</s>` is HTML strike-through; "System: Ubuntu" is a bug
report; neither is a rule.

Speed: Python's `re` tries an alternation at every position, about 1-4 ms per rule on
20,000 characters. So each rule names the words it starts with (`triggers`); one
Aho-Corasick pass over a lower-cased copy finds every trigger (and every `requires`
word) and the rule's pattern is tried only where one starts. Rules whose pattern is cheap
everywhere (`anchored=False`) run over the whole text once one of their triggers occurs.
Patterns are written for lower-case text unless `cased`.
`match` sees the text as given; `InjectionDetector` folds look-alikes and strips
invisible characters first.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from modelway.guardrails.findings import Finding
from modelway.guardrails.injection_payloads import blobs, decode
from modelway.guardrails.keywords import Keywords

ENTITY = "injection"

CONFIDENCE: dict[str, float] = {
    "instruction_override": 0.95,
    "persona_jailbreak": 0.95,
    "prompt_extraction": 0.9,
    "delimiter_injection": 0.9,
    "encoded_payload": 0.95,
}

_OVERRIDE = "ignore|disregard|forget|skip|override|bypass|neglect|discard|drop|abandon"
_EXTRACT = (
    "repeat|print|show|reveal|display|output|tell|give|write|spell|dump|leak|disclose|"
    "recite|echo|share|copy|paste|list|provide|expose|return"
)
_QUALIFIER = (
    r"(?:previous|prior|above|preceding|earlier|former|original|initial|old|existing|"
    r"foregoing|system|developer|openai|safety|ethical|moral|content|default|programmed|"
    r"pre-?set)"
)
_DIRECTIVE = (
    r"(?:instructions?|prompts?|directions?|directives?|rules?|guidelines?|commands?|"
    r"programming|constraints?|restrictions?|guardrails?|polic(?:y|ies)|filters?|"
    r"limitations?|orders|context|conversation|training)"
)
_PERSONAS = (
    r"(?:DAN|STAN|DUDE|AIM|BetterDAN|AntiGPT|BasedGPT|DevMode|UCAR|JailBreak|Mongo Tom|"
    r"Evil Confidant|NRAF|APOPHIS|OPPO|BISH|KEVIN|ChadGPT|NsfwGPT)"
)


def _alt(words: str) -> str:
    return f"(?:{words})"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    family: str
    triggers: tuple[str, ...]  # lower-case; the pattern starts at one (when anchored)
    pattern: re.Pattern[str]
    anchored: bool = True
    cased: bool = False  # match the original text, not the lower-cased copy
    requires: frozenset[str] = frozenset()  # lower-case; a match contains at least one


def _r(
    name: str,
    family: str,
    triggers: str,  # "|"-separated, lower-case, as `requires`
    pattern: str,
    *,
    anchored: bool = True,
    cased: bool = False,
    flags: int = 0,
    requires: str = "",
) -> Rule:
    needs = frozenset(requires.split("|")) if requires else frozenset()
    compiled = re.compile(pattern, flags)
    return Rule(name, family, tuple(triggers.split("|")), compiled, anchored, cased, needs)


_DIRECTIVE_WORDS = (
    "instruction|prompt|direction|directive|rule|guideline|command|programming|constraint|"
    "restriction|guardrail|polic|filter|limitation|orders|context|conversation|training"
)


_V = _alt(_OVERRIDE)
RULES: tuple[Rule, ...] = (
    _r(
        "ignore_previous",
        "instruction_override",
        _OVERRIDE,
        rf"\b{_V}\s+(?:(?:all|any|every|each|the|your|my|of|these|those|its|them|and)\s+){{0,4}}"
        rf"{_QUALIFIER}\s+(?:\w+\s+)?{_DIRECTIVE}\b",
        requires=_DIRECTIVE_WORDS,
    ),
    _r(
        "ignore_all_your",
        "instruction_override",
        _OVERRIDE,
        rf"\b{_V}\s+(?:all\s+(?:of\s+)?(?:your|the)|your|any\s+and\s+all)\s+(?:\w+\s+)?"
        rf"{_DIRECTIVE}\b",
        requires=_DIRECTIVE_WORDS,
    ),
    _r(
        "ignore_everything",
        "instruction_override",
        _OVERRIDE,
        rf"\b{_V}\s+(?:everything|anything|all)\s+(?:(?:that\s+)?(?:you\s+(?:were|have\s+been)"
        r"\s+(?:told|given|instructed)|(?:written\s+|said\s+)?(?:above|before|previously|"
        r"so\s+far|until\s+now)))",
        requires="above|before|previously|far|now|told|given|instructed",
    ),
    _r(
        "new_instructions",
        "instruction_override",
        "new|updated|revised|real|actual|true",
        r"(?:(?<![^\n])|(?<=[#*>\]:]\s)|(?<=[#*>\]]))(?:new|updated|revised|real|actual|true)"
        r"\s+(?:system\s+)?(?:instructions?|directives?|rules|task)\s*:",
        requires=":",
    ),
    _r(
        "do_not_follow",
        "instruction_override",
        "do|don't|stop|never",
        r"\b(?:do\s+not|don't|stop|never)\s+(?:follow|obey|adhere\s+to|comply\s+with)(?:ing)?"
        rf"\s+(?:any\s+(?:of\s+)?)?(?:your|the|those|these)\s+(?:\w+\s+)?{_DIRECTIVE}\b",
        requires="follow|obey|adhere|comply",
    ),
    _r(
        "instructions_void",
        "instruction_override",
        "previous|prior|above|earlier|original",
        rf"\b(?:previous|prior|above|earlier|original)\s+{_DIRECTIVE}\s+(?:are|were|is)\s+"
        r"(?:now\s+)?(?:void|null|cancelled|canceled|obsolete|revoked|invalid|fake|lifted)\b",
        requires="void|null|cancel|obsolete|revoked|invalid|fake|lifted",
    ),
    _r(
        "override_ml",
        "instruction_override",
        (
            "ignor|oubli|vergiss|vergessen|olvida|dimentica|esquece|negeer|игнор|забуд|проигнор|"
            "忽略|无视|忘记|忘掉|無視|忽視|以前|前の|上記|これまで|이전"
        ),
        r"\bignor(?:a|ar|e|ez|er|iere|ieren|iert)\s+(?:(?:todas|toutes|tutte|alle|all|"
        r"las|les|le|as|die|tus|tes|vos)\s+){0,3}(?:(?:instrucciones|instructions|istruzioni|"
        r"instruções|anweisungen|instruktionen|instructies)\s+)?(?:anteriores|previas|"
        r"précédentes|precedentes|antérieures|precedenti|vorherigen|bisherigen|obigen|vorigen|"
        r"vorhergehenden|vorige|eerdere)\b"
        r"|\b(?:oublie[zr]?|vergiss|vergessen\s+sie|olvida|dimentica|esquece|negeer)\s+"
        r"(?:\w+\s+){0,3}(?:instrucciones|instructions|istruzioni|instruções|anweisungen|"
        r"instructies|regeln|règles|reglas|regole)\b"
        r"|(?:игнорируй(?:те)?|забудь(?:те)?|проигнорируй(?:те)?)\s+(?:\w+\s+){0,2}"
        r"(?:инструкции|указания|правила)"
        r"|(?:忽略|无视|忘记|忘掉|無視|忽視)(?:掉)?(?:你|您)?(?:之前|以上|上面|先前|前面|上述|所有|全部|"
        r"以前)(?:的)?(?:所有|全部)?(?:的)?(?:指令|指示|说明|說明|提示|规则|規則|要求)"
        r"|(?:以前|前|上記|これまで)の(?:すべての|全ての)?(?:指示|命令|ルール)を(?:すべて)?無視"
        r"|이전\s*(?:의\s*)?(?:모든\s*)?(?:지시|명령|지침)\S*\s*무시",
    ),
    _r(
        "do_anything_now",
        "persona_jailbreak",
        "anything",
        r"\bdo\s+anything\s+now\b",
        anchored=False,
    ),
    _r(
        "dan_persona",
        "persona_jailbreak",
        "act|pretend|you|become|respond|answer|called|named|persona|dan",
        r"(?i:\b(?:act(?:ing)?\s+as|pretend(?:ing)?\s+to\s+be|you\s+are\s+(?:now\s+)?|become|"
        r"respond\s+as|answer\s+as|called|named|persona\s+(?:of|called)))\s*[\"'“]?"
        rf"{_PERSONAS}\b|\bDAN\s*(?i:mode\b|\d+\.\d+\b)",
        cased=True,
        requires=(
            "dan|stan|dude|aim|antigpt|basedgpt|devmode|ucar|jailbreak|mongo tom|evil confidant|"
            "nraf|apophis|oppo|bish|kevin|chadgpt|nsfwgpt"
        ),
    ),
    _r(
        "developer_mode",
        "persona_jailbreak",  # not "enable developer mode" on a phone
        (
            "developer|dev|god|jailbreak|unrestricted|unfiltered|evil|enable|activate|enter|"
            "switch|turn|simulate|chatgpt|gpt|yourself|assistant|ai"
        ),
        r"\b(?:god|jailbreak|unrestricted|unfiltered|evil)\s+mode\s+(?:enabled|activated|on|"
        r"output|is\s+(?:now\s+)?(?:enabled|active|on))\b|\b(?:developer|dev)\s+mode\s+output\b"
        r"|\b(?:enable|activate|enter|switch\s+to|turn\s+on)\s+(?:the\s+)?(?:god|jailbreak|"
        r"unrestricted|unfiltered|evil)\s+mode\b|\b(?:simulate|(?:chatgpt|gpt-?[\d.o]*|yourself|"
        r"assistant|ai)\s+with)\s+(?:the\s+)?developer\s+mode\b",
        requires="mode",
    ),
    _r(
        "jailbroken",
        "persona_jailbreak",
        "[|you",
        r"\[\W*(?:jailbreak|jailbroken|unlocked|🔓\W*jailbreak)\W*\]|\byou\s+(?:are|have\s+been)"
        r"\s+(?:now\s+)?(?:jailbroken|freed|liberated|unchained|unshackled)\b",
        requires="jailbr|unlocked|freed|liberated|unchained|unshackled",
    ),
    _r(
        "never_refuse",
        "persona_jailbreak",
        "refuse",
        r"\b(?:will|must|should|shall|can|would)\s+never\s+refuse\b|\bnever\s+refuses\b"
        r"|\b(?:do\s+not|don't|never|cannot|can't)\s+(?:ever\s+)?refuse\s+(?:a\s+|any\s+|to\s+"
        r"answer|my\s+|the\s+user)",
        anchored=False,
    ),
    _r(
        "no_longer_bound",
        "persona_jailbreak",
        "no|not|never|free|broken|released|liberated",
        r"\b(?:no\s+longer|not|never)\s+(?:be\s+)?(?:bound|restricted|limited|constrained|"
        r"restrained)\s+by\s+(?:any\s+|the\s+|your\s+|its\s+|openai)"
        r"|\b(?:free|freed|broken\s+free|released|liberated)\s+(?:of|from)\s+(?:all\s+|the\s+|"
        r"any\s+)?(?:typical\s+)?(?:confines|limitations|restrictions|rules|shackles|chains|"
        r"constraints)\s+of\s+(?:ai|openai|chatgpt|your|its)",
        requires=(
            "bound|restricted|limited|constrained|restrained|confines|limitations|restrictions|"
            "rules|shackles|chains|constraints"
        ),
    ),
    _r(
        "no_ethics",
        "persona_jailbreak",
        (
            "without|no|free|ignor|does|doesn't|don't|do|never|won't|will|needn't|unfiltered|"
            "uncensored|unrestricted|amoral"
        ),
        r"\b(?:without|no|free\s+of|ignore|ignores|ignoring)\s+(?:any\s+)?(?:ethical|moral|"
        r"ethics|morals?|content)\s+(?:or\s+(?:moral|ethical)\s+)?(?:guidelines|restrictions|"
        r"filters|boundaries|limitations|constraints|policies|considerations|principles|"
        r"standards)\b"
        r"|\b(?:does\s+not|doesn't|don't|do\s+not|never|won't|will\s+not|needn't)\s+(?:have\s+to"
        r"\s+|need\s+to\s+)?(?:abide|adhere|comply|care)\s+(?:by|to|with|about)\s+(?:any\s+|the\s+)?"
        r"(?:openai|content\s+polic|safety\s+guidelines|ethic|moral)"
        r"|\b(?:unfiltered|uncensored|unrestricted|amoral)\s+(?:and\s+\w+\s+)?(?:ai|chatbot|"
        r"assistant|model|language\s+model|version\s+of)\b",
        requires="ethic|moral|content|openai|safety|unfiltered|uncensored|unrestricted|amoral",
    ),
    _r(
        "system_prompt",
        "prompt_extraction",
        _EXTRACT + "|what",
        rf"\b{_alt(_EXTRACT)}\W+(?:[\w'\u2019-]+\W{{1,3}}){{0,4}}?(?:your|the|my|its)?\s*(?:system|"
        r"initial|original|hidden|secret|developer|internal|full|pre-?)\s*(?:prompt|message|"
        r"instructions)\b|\bwhat(?:'s|\u2019s|\s+is|\s+was|\s+are|\s+were)\s+(?:your|the)\s+"
        r"(?:system|initial|original|hidden|secret)\s+(?:prompt|instructions?|message)\b",
        requires="prompt|message|instructions",
    ),
    _r(
        "words_above",
        "prompt_extraction",
        "repeat|print|output|recite|echo|copy|reveal|write|spell|type",
        r"\b(?:repeat|print|output|recite|echo|copy|reveal|write\s+out|spell\s+out|type\s+out)"
        r"\W+(?:[\w'-]+\W+){0,4}?(?:words|text|instructions|everything|all|prompt|messages?)"
        r"\s+(?:(?:written|given|shown|that\s+(?:came|appear)|you\s+(?:were\s+given|saw))\s+)?"
        r"(?:above|before\s+(?:this|my)|prior\s+to\s+this|at\s+the\s+(?:start|beginning))",
        requires="above|before|prior|start|beginning",
    ),
    _r(
        "your_instructions",
        "prompt_extraction",
        "repeat|print|reveal|show|display|output|recite|dump|leak|disclose|tell",
        r"\b(?:repeat|print|reveal|show|display|output|recite|dump|leak|disclose|tell\s+me)\s+"
        r"(?:me\s+|us\s+)?(?:all\s+(?:of\s+)?)?your\s+(?:exact\s+|full\s+|original\s+|initial\s+|"
        r"hidden\s+|secret\s+)*(?:instructions|rules|guidelines|directives|configuration|prompt)"
        r"\b(?!\s+(?:for|on|about|to)\b)",
        requires="your",
    ),
    _r(
        "what_were_you_told",
        "prompt_extraction",
        "what",
        r"\bwhat\s+(?:exactly\s+)?(?:were|are|have)\s+you\s+(?:been\s+)?(?:told|instructed|"
        r"programmed)(?:\s+to\s+do)?(?:\s+(?:before|above|earlier|initially|at\s+the\s+"
        r"(?:start|beginning)))?\s*(?:[?.!]|$)",
        requires="told|instructed|programmed",
    ),
    _r(
        "extract_ml",
        "prompt_extraction",
        (
            "muestra|muéstrame|revela|repite|montre|révèle|répète|zeige|wiederhole|mostra|rivela|"
            "ripeti|systemprompt|system-prompt|系统提示|系統提示|システムプロンプト|시스템|системн"
        ),
        r"\b(?:muestra|muéstrame|revela|repite|montre|révèle|répète|zeige|wiederhole|mostra|"
        r"rivela|ripeti)\s+(?:\w+\s+){0,3}(?:prompt|instrucciones|instructions|anweisungen|"
        r"istruzioni)\s+(?:del\s+sistema|système|du\s+système|di\s+sistema|iniciales|initiales)"
        r"|\b(?:systemprompt|system-prompt)\b"
        r"|(?:系统提示|系統提示|システムプロンプト|시스템\s*프롬프트|системн\w+\s+промпт)",
    ),
    _r(
        "template_token",
        "delimiter_injection",
        "<|[inst]|[/inst]",  # every alternative starts with one of these
        r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|"
        r"end_header_id|begin_of_text|end_of_text|eom_id|start|end|message|channel)\|>"
        r"|<(?:start_of_turn|end_of_turn)>|<<\s*/?sys\s*>>|\[/?inst\]|</s>\s*<s>",
        anchored=False,
    ),
    _r(
        "role_header",
        "delimiter_injection",
        "system|developer|admin",
        r"^[ \t]*(?:#{1,6}|\*\*|={2,}|-{2,})[ \t]*(?:system|developer|admin)(?:[ \t]+(?:prompt|"
        r"message|instructions?|override|note))?[ \t]*(?:\*\*|={2,}|-{2,})?[ \t]*:"
        r"|^[ \t]*\[(?:system|developer)(?:[ \t]+(?:prompt|message|note|override))?\][ \t]*:?"
        r"|^[ \t]*(?:system|developer|admin)[ \t]+(?:override|message|prompt|instruction|update|"
        r"notice|command)[ \t]*:"
        r"|^[ \t]*```[ \t]*(?:system|developer)[ \t]*$",
        anchored=False,
        flags=re.MULTILINE,
    ),
)

# Key words rot13-ed and reversed: only when one occurs is the text transformed.
_ROT13_HINTS = ("vtaber", "qvfertneq", "vafgehpgvba", "flfgrz cebzcg", "qb nalguvat abj")
_REVERSED_HINTS = ("erongi", "drageresid", "snoitcurtsni", "tpmorp metsys", "won gnihtyna od")


_KEYWORDS = Keywords(
    [w for rule in RULES for w in (*rule.triggers, *rule.requires)]
    + [*_ROT13_HINTS, *_REVERSED_HINTS]
)


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)  # keep offsets


def _plain(text: str, low: str, words: dict[str, list[int]]) -> list[Finding]:
    """`words`: `_KEYWORDS.find(low)`."""
    found = []
    for rule in RULES:
        if rule.requires and rule.requires.isdisjoint(words):
            continue
        source = text if rule.cased else low
        confidence = CONFIDENCE[rule.family]
        starts = [words[t] for t in rule.triggers if t in words]
        if not starts:
            continue
        if not rule.anchored:
            found += [
                Finding(ENTITY, m.start(), m.end(), confidence, rule.family)
                for m in rule.pattern.finditer(source)
            ]
            continue
        end = -1
        for i in sorted(set().union(*starts)) if len(starts) > 1 else starts[0]:
            if i < end:
                continue
            m = rule.pattern.match(source, i)
            if m:
                found.append(Finding(ENTITY, m.start(), m.end(), confidence, rule.family))
                end = m.end()
    return found


def _any_rule(text: str, depth: int) -> bool:
    low = _lower(text)
    words = _KEYWORDS.find(low)
    return bool(_plain(text, low, words) or (depth > 0 and _encoded(text, low, words, depth - 1)))


def _encoded(text: str, low: str, words: dict[str, list[int]], depth: int) -> list[Finding]:
    found = []
    score = CONFIDENCE["encoded_payload"]
    for m in blobs(text):
        decoded = decode(m.group())
        if decoded and _any_rule(decoded, depth):
            found.append(Finding(ENTITY, m.start(), m.end(), score, "encoded_payload"))
    if any(h in words for h in _ROT13_HINTS):
        rot = codecs.encode(text, "rot13")
        rot_low = _lower(rot)
        for f in _plain(rot, rot_low, _KEYWORDS.find(rot_low)):
            found.append(Finding(ENTITY, f.start, f.end, score, "encoded_payload"))
    if any(h in words for h in _REVERSED_HINTS):
        n = len(text)
        reversed_low = low[::-1]
        for f in _plain(text[::-1], reversed_low, _KEYWORDS.find(reversed_low)):
            found.append(Finding(ENTITY, n - f.end, n - f.start, score, "encoded_payload"))
    return found


def match(text: str) -> list[Finding]:
    """Every rule hit as an `injection` finding, `rule` = family, ordered by position."""
    low = _lower(text)
    words = _KEYWORDS.find(low)
    found = _plain(text, low, words) + _encoded(text, low, words, depth=1)
    return sorted(found, key=lambda f: (f.start, f.end, f.rule or ""))
