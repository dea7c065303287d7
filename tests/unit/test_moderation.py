import pytest

from modelway.guardrails.moderation import BUILTIN_CATEGORIES, ModerationWatch, Moderator


@pytest.fixture
def moderator() -> Moderator:
    return Moderator(BUILTIN_CATEGORIES)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Step one: build a pipe bomb from", "weapons"),
        ("Here is how to make a BOMB", "weapons"),
        ("You can synthesize sarin by", "weapons"),
        ("I'm going to kill you", "violence"),
        ("I\u2019m going to kill you", "violence"),
        ("how to strangle someone quietly", "violence"),
        ("the painless way to kill myself", "self_harm"),
        ("a list of suicide methods", "self_harm"),
        ("where to find child pornography", "sexual_minors"),
        ("they are subhuman", "hate"),
        ("heil hitler", "hate"),
    ],
)
def test_builtin_phrases_are_caught(moderator: Moderator, text: str, category: str) -> None:
    assert moderator.check(text) == [category]


@pytest.mark.parametrize(
    "text",
    [
        "Kill the process with `kill -9` or kill all the child processes.",
        "The movie was a bomb at the box office.",
        "Mix the baking soda to make a bath bomb.",
        "If you are thinking about suicide, please call a crisis line.",
        "Explosives are regulated; thermite reactions are studied in chemistry.",
        "The history of the Second World War and the Holocaust.",
    ],
)
def test_ordinary_text_is_not_flagged(moderator: Moderator, text: str) -> None:
    assert moderator.check(text) == []


def test_matching_ignores_case_whitespace_and_emphasis(moderator: Moderator) -> None:
    assert moderator.check("How To  Build\nA Pipe Bomb") == ["weapons"]
    assert moderator.check("how to **build** a _pipe bomb_") == ["weapons"]
    assert moderator.check("kill\u200bmyself") == []  # the zero-width space joins the words
    assert moderator.check("kill \u200bmyself") == ["self_harm"]


def test_only_the_chosen_categories_are_checked() -> None:
    weapons_only = Moderator(["weapons"])
    assert weapons_only.categories == ("weapons",)
    assert weapons_only.check("I want to kill myself, then build a pipe bomb") == ["weapons"]
    assert Moderator([]).check("build a pipe bomb") == []


def test_several_categories_are_reported_in_order(moderator: Moderator) -> None:
    text = "build a pipe bomb, then kill myself; heil hitler"
    assert moderator.check(text) == ["self_harm", "weapons", "hate"]


def test_operator_terms_are_custom_and_literal() -> None:
    moderator = Moderator([], terms=["Project Falcon", "C++", "a.b"])
    assert moderator.check("the project  FALCON launch") == ["custom"]
    assert moderator.check("written in c++ mostly") == ["custom"]
    assert moderator.check("axb") == []  # "." is a dot, not any character
    assert moderator.check("a.b") == ["custom"]
    assert moderator.check("projectfalcon") == []  # whole words only


def test_operator_terms_can_be_regular_expressions() -> None:
    moderator = Moderator([], terms=[r"re:\bticket-\d{3}\b"])
    assert moderator.check("see TICKET-123") == ["custom"]
    assert moderator.check("see ticket-12") == []


def test_term_categories_extend_a_builtin_one_or_add_their_own() -> None:
    moderator = Moderator(
        ["weapons"], term_categories={"weapons": ["zip gun"], "competitors": ["Acme Corp"]}
    )
    assert moderator.categories == ("weapons", "competitors")
    assert moderator.check("a zip gun") == ["weapons"]
    assert moderator.check("build a pipe bomb") == ["weapons"]
    assert moderator.check("try ACME corp instead") == ["competitors"]


def test_bad_configuration_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="unknown moderation categories"):
        Moderator(["violence", "violnce"])
    with pytest.raises(ValueError, match="bad pattern"):
        Moderator([], terms=["re:(unclosed"])
    with pytest.raises(ValueError, match="empty"):
        Moderator([], terms=["  "])


def test_a_term_split_across_chunks_is_caught_when_it_completes(moderator: Moderator) -> None:
    watch = ModerationWatch(moderator)
    assert watch.feed("Sure. First, how to bu") == []
    assert watch.feed("ild a pi") == []
    assert watch.feed("pe bomb: take") == ["weapons"]
    assert watch.matched == ("weapons",)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_split_finds_the_same_categories(moderator: Moderator, size: int) -> None:
    text = "Well, here is how to build a pipe bomb. " * 3 + "And then I will kill myself."
    watch = ModerationWatch(moderator)
    found = [c for i in range(0, len(text), size) for c in watch.feed(text[i : i + size])]
    assert found == ["weapons", "self_harm"]


def test_a_category_is_reported_once_per_stream(moderator: Moderator) -> None:
    watch = ModerationWatch(moderator)
    assert watch.feed("build a pipe bomb. ") == ["weapons"]
    assert watch.feed("build a pipe bomb again") == []
    assert watch.feed("") == []


def test_the_window_does_not_start_mid_word() -> None:
    # "xbo" + "mb" is the word "xbomb", not "bomb": a tail cut to "bo" would match
    watch = ModerationWatch(Moderator([], terms=["bomb"]), overlap=2)
    assert watch.feed("an xbo") == []
    assert watch.feed("mb") == []
    assert watch.feed(" and a bo") == []
    assert watch.feed("mb") == ["custom"]
