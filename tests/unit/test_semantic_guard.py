"""The lexical check on semantic matches: close in meaning is not enough when the two
questions differ in a number, a name, a negation or a direction."""

from __future__ import annotations

import pytest

from modelway.cache.semantic_guard import same_specifics


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of France?", "what is the capital city of France?"),
        ("How do I reset my password?", "How can I reset my password, please?"),
        (
            "What's water's freezing point in Fahrenheit?",
            "What is the freezing point of water in Fahrenheit?",
        ),
        ("Why don't cats like water?", "Why don't cats enjoy water?"),
    ],
)
def test_paraphrases_pass(a: str, b: str) -> None:
    assert same_specifics(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of France?", "What is the capital of Germany?"),
        ("Convert 5 miles to km", "Convert 50 miles to km"),
        ("Which plants are poisonous to cats?", "Which plants are not poisonous to cats?"),
        (
            "Which airlines allow pets in the cabin?",
            "Which airlines don't allow pets in the cabin?",
        ),
        ("Translate 'pain' from English to French.", "Translate 'pain' from French to English."),
        ("How do I cast an int to a float in C?", "How do I cast a float to an int in C?"),
        (
            "What time is it in Tokyo at 9 am in London?",
            "What time is it in Tokyo at 9 pm in London?",
        ),
        ("List three prime numbers.", "List ten prime numbers."),
    ],
)
def test_near_misses_fail(a: str, b: str) -> None:
    assert not same_specifics(a, b)
