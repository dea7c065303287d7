from modelway.engine.stop_strings import StopMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    if not matcher.stopped:
        out += matcher.flush()
    return out, matcher.stopped


def test_no_stops_passes_everything_through() -> None:
    assert run([], ["a", "b"]) == ("ab", False)


def test_stop_inside_one_piece_is_cut_and_not_emitted() -> None:
    assert run(["END"], ["hello END world"]) == ("hello ", True)


def test_stop_split_across_pieces_is_never_leaked() -> None:
    matcher = StopMatcher(["</answer>"])
    emitted = [matcher.feed(p) for p in ["The answer is 4", "</an", "swer>", " more"]]
    assert "".join(emitted) == "The answer is 4"
    assert matcher.stopped
    assert "<" not in "".join(emitted)


def test_held_back_prefix_is_released_when_it_turns_out_harmless() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("go ST") == "go "
    assert matcher.feed("AY") == "STAY"
    assert not matcher.stopped


def test_earliest_of_several_stops_wins() -> None:
    assert run(["b", "a"], ["xxab"]) == ("xx", True)


def test_flush_releases_pending_text_at_the_end() -> None:
    assert run(["STOP"], ["end S"]) == ("end S", False)
