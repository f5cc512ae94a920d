"""core.evaluate's word on a score that is not its card's figure (other scenes, other files)."""
from __future__ import annotations


def test_a_score_on_other_scenes_or_files_than_the_cards_says_so(tmp_path) -> None:
    """A review scored 6 of tile 3's 9 images at half size (48.3 % against the card's 53.1 %) with no word."""
    import hashlib

    from core.seg.evaluate import not_the_cards

    files = {}
    for name in ("t/a", "t/b", "t/c"):
        files[name] = tmp_path / f"{name.replace('/', '_')}.jpg"
        files[name].write_bytes(name.encode())
    digests = {n: hashlib.sha256(f.read_bytes()).hexdigest() for n, f in files.items()}
    card = {"evaluation": {"scenes": ["t/a", "t/b", "t/c", "t/d"]}, "domain": {"scene_digests": digests}}
    assert not_the_cards(card, "val", ["t/a"], files) is None  # only the test split has a card figure
    assert not_the_cards({**card, "evaluation": {"scenes": ["t/a", "t/b", "t/c"]}}, "test", ["t/a", "t/b", "t/c"],
                         files) is None  # the card's own scenes and files: its figure
    files["t/b"].write_bytes(b"re-encoded")
    said = not_the_cards(card, "test", ["t/a", "t/b", "t/c", "t/e"], files)
    assert said == ("note: not the card's figure: 1 of the card's 4 test scenes are not in this data (t/d); 1 scenes "
                    "the card did not score (t/e); 1 scene files are not the ones the card was scored on (their "
                    "sha256 differs) (t/b)")
