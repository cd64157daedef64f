"""Greedy and lexicon + KenLM beam-search CTC decoding on crafted emissions."""

from __future__ import annotations

import sys

import pytest
import torch

from w2v.config.structure import structure_component
from w2v.data.dictionary import Dictionary
from w2v.errors import ConfigError, DataError, MissingDependencyError
from w2v.plugins.ctc.decoders import BeamConfig, CTCBeamDecoder, CTCGreedyDecoder, greedy_tokens
from w2v.plugins.ctc.lexicon import build_lexicon
from w2v.plugins.ctc.lm import build_arpa

pytest.importorskip("flashlight.lib.text")

D = Dictionary.from_symbols(["|", "T", "H", "E", "C", "A", "R", "S", "O"])


def emit(frames: list[dict[str, float] | str], floor: float = 1e-3) -> torch.Tensor:
    """Log-probabilities ``[T, V]``: each frame is a symbol (probability 0.9) or a
    ``{symbol: probability}`` mapping; ``-`` is the blank; the rest share what is left."""
    rows = []
    for f in frames:
        spec = {f: 0.9} if isinstance(f, str) else f
        p = torch.full((len(D),), 0.0)
        for sym, prob in spec.items():
            p[D.blank if sym == "-" else D.index(sym)] = prob
        rest = (p == 0)
        p[rest] = max(1.0 - float(p.sum()), floor) / int(rest.sum())
        rows.append(torch.log(p / p.sum()))
    return torch.stack(rows)


def spell(text: str) -> list[str]:
    """``"THE CAT"`` -> frames ``T - H - E | C - A - T |`` (one frame per letter)."""
    frames = []
    for word in text.split():
        for c in word:
            frames += [c, "-"]
        frames[-1] = "|"
    return frames


def pad_batch(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[T_i, V]`` rows; padded frames hold random garbage that must be ignored."""
    lengths = torch.tensor([r.shape[0] for r in rows])
    out = torch.randn(len(rows), int(lengths.max()), len(D), generator=torch.Generator()
                      .manual_seed(0)).log_softmax(-1)
    for b, r in enumerate(rows):
        out[b, :len(r)] = r
    return out, lengths


def test_greedy_collapses_repeats_drops_blanks_and_respects_lengths():
    em = emit(["T", "T", "-", "O", "-", "O", "|", "T", "|"])
    garbage = emit(["S", "A"])
    x = torch.stack([torch.cat([em, garbage]), torch.cat([emit(["A", "|"]), emit(["S"] * 9)])])
    tokens, scores = greedy_tokens(x, torch.tensor([9, 2]), D.blank)
    assert tokens == [D.encode("T O O | T |".split()), D.encode("A |".split())]
    assert scores[1] == pytest.approx(2 * torch.log(torch.tensor(0.9)).item(), rel=1e-3)
    hyps = CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x, torch.tensor([9, 2]))
    assert [h.text for h in hyps] == ["TOO T", "A"]
    assert hyps[0].words == ["TOO", "T"]
    # no lengths: every frame counts
    assert CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x[:1])[0].text == "TOO T SA"


def test_greedy_batched_equals_single():
    rows = [emit(spell(t)) for t in ["THE CAT", "A", "CAR HAT SO"]]
    x, lengths = pad_batch(rows)
    dec = CTCGreedyDecoder(CTCGreedyDecoder.Config(), D)
    batched = dec.decode(x, lengths)
    single = [dec.decode(r[None])[0] for r in rows]
    assert [(h.text, h.tokens) for h in batched] == [(h.text, h.tokens) for h in single]
    assert [h.score for h in batched] == pytest.approx([h.score for h in single])


@pytest.fixture
def lm_files(tmp_path):
    """A lexicon and a bigram LM where ``THE CAT`` is common and ``THE CAR`` rare."""
    text = ["THE CAT SAT", "THE CAT", "A CAT SAT", "THE CAT ATE", "SO THE CAT"] * 4 + \
           ["THE CAR", "A HAT", "THE HAT"]
    text_path = tmp_path / "lm.txt"
    text_path.write_text("\n".join(text) + "\n")
    arpa = tmp_path / "lm.arpa"
    lm = build_arpa(text_path, arpa, order=2)
    lexicon = build_lexicon(sorted(lm.vocabulary - {"<s>", "</s>", "<unk>"}), D,
                            tmp_path / "lexicon.txt")
    return str(lexicon), str(arpa)


def beam(lexicon, lm, **kw) -> CTCBeamDecoder:
    return CTCBeamDecoder(BeamConfig(lexicon=lexicon, lm=lm, beam=20, word_score=0.0, **kw), D)


def test_lm_changes_the_greedy_answer(lm_files):
    lexicon, arpa = lm_files
    frames = spell("THE CA")[:-1] + ["-", {"R": 0.5, "T": 0.4}, "|"]   # acoustically CAR
    x = emit(frames)[None]
    assert CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x)[0].text == "THE CAR"
    assert beam(lexicon, None).decode(x)[0].text == "THE CAR"            # lexicon alone
    with_lm = beam(lexicon, arpa, lm_weight=2.0).decode(x)[0]
    assert with_lm.text == "THE CAT" and with_lm.words == ["THE", "CAT"]
    assert D.words(with_lm.tokens) == "THE CAT"
    # a clear acoustic CAR survives the LM
    clear = emit(spell("THE CAR"))[None]
    assert beam(lexicon, arpa, lm_weight=2.0).decode(clear)[0].text == "THE CAR"


def test_lexicon_repairs_a_non_word(lm_files):
    lexicon, _ = lm_files
    x = emit(spell("THE CA")[:-1] + ["-", {"S": 0.5, "T": 0.45}, "|"])[None]   # spells CAS
    assert CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x)[0].text == "THE CAS"
    assert beam(lexicon, None).decode(x)[0].text == "THE CAT"


def test_beam_batched_equals_single(lm_files):
    lexicon, arpa = lm_files
    rows = [emit(spell(t)) for t in ["THE CAT SAT", "A HAT", "SO THE CAR"]]
    x, lengths = pad_batch(rows)
    dec = beam(lexicon, arpa)
    batched = dec.decode(x, lengths)
    single = [dec.decode(r[None])[0] for r in rows]
    assert [h.text for h in batched] == ["THE CAT SAT", "A HAT", "SO THE CAR"]
    assert [(h.text, h.tokens) for h in batched] == [(h.text, h.tokens) for h in single]
    assert [h.score for h in batched] == pytest.approx([h.score for h in single], rel=1e-5)


def test_lexicon_free_beam_without_lm_matches_greedy_and_nbest():
    rows = [emit(spell(t)) for t in ["THE CAT", "OH"]]
    x, lengths = pad_batch(rows)
    dec = CTCBeamDecoder(BeamConfig(beam=8, nbest=3), D)
    assert [h.text for h in dec.decode(x, lengths)] == \
        [h.text for h in
         CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x, lengths)] == ["THE CAT", "OH"]
    nbest = dec.decode_nbest(x, lengths)
    assert [len(r) for r in nbest] == [3, 3]
    assert nbest[0][0].score >= nbest[0][1].score >= nbest[0][2].score


def test_lexicon_free_beam_with_a_letter_lm_changes_the_greedy_answer(tmp_path):
    """A letter-level LM (lexicon-free decoding) is queried with the dictionary's own token
    ids: each letter must reach the LM as itself (torchaudio's default word list does not
    follow the token order)."""
    text = tmp_path / "letters.txt"
    text.write_text("C A T |\nT H E | C A T |\nA | C A T |\nT H E | H A T |\n")
    arpa = tmp_path / "letters.arpa"
    build_arpa(text, arpa, 3)
    frames = spell("THE CA")[:-1] + ["-", {"R": 0.5, "T": 0.4}, "|"]   # acoustically CAR
    x = emit(frames)[None]
    assert CTCGreedyDecoder(CTCGreedyDecoder.Config(), D).decode(x)[0].text == "THE CAR"
    dec = CTCBeamDecoder(BeamConfig(lm=str(arpa), beam=20, lm_weight=1.0, word_score=0.0), D)
    assert dec.decode(x)[0].text == "THE CAT"
    # every letter the LM knows survives when the audio is clear
    for clear in ["THE CAT", "A HAT", "THE CAR"]:
        assert dec.decode(emit(spell(clear))[None])[0].text == clear


def test_registered_decoders_build_from_specs(lm_files):
    lexicon, arpa = lm_files
    greedy = structure_component("decoder", {"name": "ctc_greedy"}).build(None, dictionary=D)
    spec = structure_component("decoder", {"name": "ctc_beam", "lexicon": lexicon, "lm": arpa,
                                           "beam": 10})
    beam_dec = spec.build(None, dictionary=D)
    x = emit(spell("THE CAT"))[None]
    assert greedy.decode(x)[0].text == beam_dec.decode(x)[0].text == "THE CAT"
    with pytest.raises(ConfigError, match="needs the label dictionary"):
        spec.build(None)


def test_beam_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist") as err:
        CTCBeamDecoder(BeamConfig(lexicon=str(tmp_path / "nope.txt")), D)
    assert err.value.key == "lexicon"
    with pytest.raises(ConfigError, match="silence token"):
        CTCBeamDecoder(BeamConfig(sil_token="_"), D)
    # the decoder declares flashlight-text when it registers; building it checks that first
    monkeypatch.setitem(sys.modules, "flashlight.lib.text", None)
    spec = structure_component("decoder", {"name": "ctc_beam"}, path="decoder")
    with pytest.raises(MissingDependencyError) as err:
        spec.build(None, dictionary=D)
    assert "`pip install flashlight-text`" in err.value.hint
    assert "`pip install -e '.[decode]'`" in err.value.hint
    assert err.value.key == "decoder" and isinstance(err.value, ConfigError)


def test_loading_an_lm_prints_nothing(lm_files, capfd):
    """KenLM writes its loading progress bar ("Reading lm.arpa ----5---10...") to file
    descriptor 2 from C++; the decoder holds it back."""
    lexicon, arpa = lm_files
    capfd.readouterr()
    beam(lexicon, arpa)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_the_lm_beam_search_needs_no_kenlm_python_module(lm_files, monkeypatch):
    """flashlight-text's wheel carries KenLM: `requires=` declares flashlight-text alone, and
    the decoder works with the `kenlm` module unimportable."""
    from w2v.plugin_manager import registry

    monkeypatch.setitem(sys.modules, "kenlm", None)
    lexicon, arpa = lm_files
    x = emit(spell("THE CAT"))[None]
    assert beam(lexicon, arpa).decode(x)[0].text == "THE CAT"
    assert [r.package for r in registry().get("decoder", "ctc_beam").requires] == \
        ["flashlight-text"]
