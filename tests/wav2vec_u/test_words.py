"""wav2vec-U word decoding: the text stage's lexicon and word LM, the generator's phone
distributions presented to the ctc_beam decoder, and select_gan writing words and WER."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from w2v.data.dictionary import Dictionary

TEXT = ["THE CAT ATE TWO MICE", "I GO TO BED", "THE BIG GAME IS ON", "A DOG SAT ON THE MAT",
        "HE HAS TWO DOGS", "WE GO TO EAT", "ME TOO", "THE CAT SAT ON THE MAT"] * 3


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    """A prepare_text stage run (espeak-ng phones) writing the word lexicon and LM."""
    from w2v.cli import main

    root = tmp_path_factory.mktemp("w2vu_words")
    (root / "text.txt").write_text("".join(line + "\n" for line in TEXT))
    recipe = root / "text.yaml"
    recipe.write_text(f"stages:\n  text: {{name: prepare_text, text: {root / 'text.txt'}, "
                      f"sil_prob: 0.0, lm_order: 3, word_lm_order: 3}}\n")
    assert main([str(recipe), "--out", str(root / "run")]) == 0
    return root / "run" / "text"


def _lexicon(text_dir: Path) -> dict[str, list[str]]:
    rows = (text_dir / "lexicon.words.lst").read_text(encoding="utf-8").splitlines()
    return {r.split("\t")[0]: r.split("\t")[1].split() for r in rows}


def _words(text_dir: Path, **decoder):
    from w2v.config.structure import structure_component
    from w2v.plugins.wav2vec_u.words import WordDecoding

    spec = structure_component("decoder", {"name": "ctc_beam", "lexicon": "auto", "lm": "auto",
                                           "beam": 20, "word_score": 0.0, **decoder},
                               path="stages.select.word_decoder")
    dictionary = Dictionary.load(text_dir / "dict.phn.txt")
    return WordDecoding.from_spec(spec, text_dir, dictionary), dictionary


def _logits(dictionary: Dictionary, segments: list[dict[str, float]], repeat=(2, 1, 3)
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator logits ``[1, T, V]``: each segment ``{phone: logit}`` over a floor of 0,
    held for 1-3 frames (JOIN merges them again)."""
    frames = []
    for i, seg in enumerate(segments):
        row = torch.zeros(len(dictionary))
        for phone, value in seg.items():
            row[dictionary.index(phone)] = value
        frames += [row] * repeat[i % len(repeat)]
    return torch.stack(frames)[None], torch.tensor([len(frames)])


def _spell(lexicon, sentence: str, silence_after=()) -> list[dict[str, float]]:
    out = [{"<SIL>": 6.0}]
    for i, w in enumerate(sentence.split()):
        out += [{p: 6.0} for p in lexicon[w]]
        if i in silence_after:
            out.append({"<SIL>": 6.0})
    return out + [{"<SIL>": 6.0}]


def test_the_lexicon_spells_each_word_as_the_phone_text_does(text_dir):
    from w2v.plugins.wav2vec_u.text import espeak_lexicon

    lexicon = _lexicon(text_dir)
    words = {w for line in TEXT for w in line.split()}
    assert set(lexicon) == words
    assert lexicon["CAT"] == ["k", "æ", "t"] and lexicon["GAME"] == ["ɡ", "eɪ", "m"]
    assert lexicon == espeak_lexicon(words)
    # sil_prob 0: each phone sentence is <SIL>, its words' spellings, <SIL>
    phn = (text_dir / "train.phn").read_text(encoding="utf-8").splitlines()
    assert phn == [" ".join(["<SIL>", *(p for w in line.split() for p in lexicon[w]), "<SIL>"])
                   for line in TEXT]
    summary = json.loads((text_dir / "text.json").read_text())
    assert summary["lm_words"] == len(words) and summary["lm_sentences"] == len(TEXT)


def test_the_word_lm_is_an_arpa_of_the_text_that_the_decoder_loads(text_dir):
    from w2v.plugins.ctc.lm import read_arpa, train_kneser_ney

    lm = read_arpa(text_dir / "lm.words.arpa")
    assert lm.order == 3
    assert lm.vocabulary == {w for line in TEXT for w in line.split()} | {"<s>", "</s>", "<unk>"}
    assert lm.score("THE CAT ATE TWO MICE") == pytest.approx(
        train_kneser_ney(TEXT, order=3).score("THE CAT ATE TWO MICE"), abs=1e-5)
    words, _ = _words(text_dir)                           # KenLM reads it through flashlight
    assert words.decoder.config.lm == str(text_dir / "lm.words.arpa")


def test_segment_emissions_put_one_blank_frame_between_segments():
    from w2v.plugins.wav2vec_u.words import NEVER, segment_emissions

    d = Dictionary.from_symbols(["a", "b", "<SIL>"])
    logits = torch.zeros(2, 5, len(d))
    for b, row in enumerate([[4, 4, 5, 4, 6], [5, 5, 6, 0, 0]]):   # ids: a=4 b=5 <SIL>=6
        logits[b, torch.arange(5), torch.tensor(row)] = 3.0
    em, lengths = segment_emissions(logits, torch.tensor([5, 3]), d)
    assert lengths.tolist() == [9, 5]                     # 4 and 2 segments
    assert em.shape == (2, 9, len(d))
    blank = em[:, 0::2]
    assert (blank[..., d.blank] == 0).all() and (blank[..., 1:] == NEVER).all()
    seg = em[0, 1::2]
    assert seg.argmax(-1).tolist() == [4, 5, 4, 6]        # the runs a a | b | a | <SIL>
    assert (seg[:, :d.nspecial] == NEVER).all()           # never the blank inside a segment
    assert torch.allclose(seg[:, d.nspecial:].exp().sum(-1), torch.ones(4))


def test_a_generator_output_spelling_words_decodes_to_them(text_dir):
    words, d = _words(text_dir)
    lexicon = _lexicon(text_dir)
    for sentence in ("THE CAT SAT ON THE MAT", "WE GO TO BED"):
        logits, lengths = _logits(d, _spell(lexicon, sentence))
        assert words.decode_logits(logits, lengths) == [sentence]


def test_sil_is_the_decoders_silence_and_never_a_word(text_dir):
    words, d = _words(text_dir)
    lexicon = _lexicon(text_dir)
    assert words.decoder.config.sil_token == "<SIL>"
    logits, lengths = _logits(d, _spell(lexicon, "A DOG SAT ON THE MAT", silence_after=(0, 2, 3)))
    assert words.decode_logits(logits, lengths) == ["A DOG SAT ON THE MAT"]
    logits, lengths = _logits(d, [{"<SIL>": 6.0}] * 3)
    assert words.decode_logits(logits, lengths) == [""]


def test_adjacent_segments_can_take_the_same_phone(text_dir):
    """BIG GAME has ɡ ɡ at the word boundary: JOIN makes one segment of equal argmax, so
    the generator shows the second ɡ as a runner-up (argmax k); the blank frame between
    segments lets the lexicon and LM read ɡ twice."""
    from w2v.plugins.wav2vec_u.selection import viterbi_phones

    words, d = _words(text_dir)
    segs = [{"<SIL>": 6.0}, {"ð": 6.0}, {"ə": 6.0}, {"b": 6.0}, {"ɪ": 6.0}, {"ɡ": 6.0},
            {"k": 4.0, "ɡ": 3.5}, {"eɪ": 6.0}, {"m": 6.0}, {"ɪ": 6.0}, {"z": 6.0},
            {"ɔ": 6.0}, {"n": 6.0}, {"<SIL>": 6.0}]
    logits, lengths = _logits(d, segs)
    viterbi = [d[i] for i in viterbi_phones(logits, lengths, d)[0]]
    assert viterbi[3:7] == ["ɪ", "ɡ", "k", "eɪ"]
    assert words.decode_logits(logits, lengths) == ["THE BIG GAME IS ON"]


def test_the_word_lm_chooses_between_homophones(text_dir):
    words, d = _words(text_dir, lm_weight=2.0)
    lexicon = _lexicon(text_dir)
    assert lexicon["TO"] == lexicon["TWO"] == lexicon["TOO"]
    for sentence in ("HE HAS TWO DOGS", "WE GO TO BED", "ME TOO"):
        logits, lengths = _logits(d, _spell(lexicon, sentence))
        assert words.decode_logits(logits, lengths) == [sentence]


def test_fairseq_frames_presentation_reads_every_frame_with_a_blank_weight(text_dir):
    from w2v.plugins.wav2vec_u.words import WordDecoding

    base, d = _words(text_dir)
    lexicon = _lexicon(text_dir)
    logits, lengths = _logits(d, _spell(lexicon, "A DOG SAT ON THE MAT"))
    frames = WordDecoding(base.decoder, d, emissions="frames", blank_weight=2.0)
    assert frames.decode_logits(logits, lengths) == ["A DOG SAT ON THE MAT"]
    # fairseq's emissions: the blank column holds blank_weight before the log-softmax
    em, n = frames.emit(logits, lengths)
    assert n.tolist() == lengths.tolist() and em.shape == logits.shape
    assert torch.allclose(em[0, :, d.blank] - em[0, :, d.index("<SIL>")],
                          2.0 - logits[0, :, d.index("<SIL>")])


def test_a_word_decoder_without_a_lexicon_is_a_config_error(text_dir):
    from w2v.config.structure import structure_component
    from w2v.errors import ConfigError
    from w2v.plugins.wav2vec_u.words import WordDecoding

    spec = structure_component("decoder", {"name": "ctc_beam"}, path="stages.select.word_decoder")
    with pytest.raises(ConfigError, match="needs a lexicon"):
        WordDecoding.from_spec(spec, text_dir, Dictionary.load(text_dir / "dict.phn.txt"))


# ------------------------------------------------------------------ end to end
LEXICON = {"WA": ["a", "b"], "WB": ["c"], "WC": ["d", "e", "a"], "WD": ["b", "e"]}
PHONES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """text -> gan (a few updates on synthetic frames) -> select with a word and a phone
    decoder; the splits have `.wrd` and `.phn` references."""
    from w2v.cli import main
    from w2v.plugins.data.shards import ShardWriter, write_meta

    root = tmp_path_factory.mktemp("w2vu_e2e")
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(len(PHONES), 8, generator=g)

    def sentence():
        n = int(torch.randint(2, 5, (1,), generator=g))
        return [list(LEXICON)[int(i)] for i in torch.randint(0, len(LEXICON), (n,), generator=g)]

    sizes = {"train": 24, "valid": 8, "test": 8}
    for split, n in sizes.items():
        writer, wrd, phn = ShardWriter(root / "feats", split, dim=8), [], []
        for _ in range(n):
            words = sentence()
            phones = [p for w in words for p in LEXICON[w]]
            writer.add(torch.cat([centres[PHONES.index(p)] + 0.1 * torch.randn(2, 8, generator=g)
                                  for p in phones]))
            wrd.append(" ".join(words))
            phn.append(" ".join(phones))
        writer.finish()
        manifest = root / "audio" / f"{split}.tsv"
        manifest.parent.mkdir(exist_ok=True)
        manifest.write_text("/nowhere\n" + "".join(f"u{i}.wav\t16000\n" for i in range(n)))
        manifest.with_suffix(".wrd").write_text("".join(w + "\n" for w in wrd))
        manifest.with_suffix(".phn").write_text("".join(p + "\n" for p in phn))
    write_meta(root / "feats", {"dim": 8, "stride": 320, "sample_rate": 16000, "splits": {
        s: {"utterances": n, "manifest": str(root / "audio" / f"{s}.tsv")}
        for s, n in sizes.items()}})
    (root / "text.txt").write_text("".join(" ".join(sentence()) + "\n" for _ in range(100)))
    (root / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in LEXICON.items()))
    recipe = root / "w2vu.yaml"
    recipe.write_text(f"""
trainer: {{precision: fp32, max_updates: 4, log_interval: 2, save_interval: 2, keep_last: 5,
           lr: 1.0e-3, group_optimizers: {{generator: {{lr: 1.0e-3}},
                                           discriminator: {{lr: 1.0e-3}}}}}}
stages:
  text: {{name: prepare_text, text: {root / 'text.txt'}, lexicon: {root / 'lexicon.txt'},
         lm_order: 3, word_lm_order: 2}}
  gan:
    name: train_gan
    valid: false
    data: {{name: features, path: {root / 'feats'}, max_tokens: 4000,
           sources: {{text: {{name: units, path: text, ext: phn, valid: null}}}}}}
    model: {{encoder: {{name: precomputed}}, aggregator: null,
            head: {{name: wav2vec_u_generator, kernel: 3}}}}
    objective: {{name: wav2vec_u, discriminator: {{dim: 8, depth: 1, kernel: 3}}}}
  select:
    name: select_gan
    from: gan
    features: {root / 'feats'}
    text: text
    decode_splits: [valid, test]
    word_decoder: {{name: ctc_beam, lexicon: auto, lm: auto, beam: 10}}
    phone_decoder: {{name: ctc_beam, lexicon: null, lm: auto, beam: 10}}
""")
    assert main([str(recipe), "--out", str(root / "run")]) == 0
    return root


def test_select_writes_words_next_to_phones_and_reports_wer(pipeline):
    from w2v.plugins.wav2vec_u.words import word_error_rate

    select = pipeline / "run" / "select"
    results = json.loads((select / "results.json").read_text())
    assert results["word_decoder"] == {"name": "ctc_beam", "emissions": "segments",
                                       "lm_weight": 2.0, "word_score": -1.0}
    for split in ("valid", "test"):
        hyps = (select / f"{split}.hyp.wrd").read_text().splitlines()
        assert len(hyps) == 8 == len((select / f"{split}.hyp.phn").read_text().splitlines())
        assert {w for h in hyps for w in h.split()} <= set(LEXICON)
        refs = (pipeline / "audio" / f"{split}.wrd").read_text().splitlines()
        assert results["splits"][split]["wer"] == pytest.approx(word_error_rate(hyps, refs))
    header = (select / "selection.tsv").read_text().splitlines()[0]
    assert "wer" not in header                             # never part of the choice


def test_select_decodes_phones_with_the_phone_lm_too(pipeline):
    from w2v.plugins.wav2vec_u.select_stage import phone_error_rate

    select = pipeline / "run" / "select"
    results = json.loads((select / "results.json").read_text())
    assert results["phone_decoder"]["name"] == "ctc_beam"
    for split in ("valid", "test"):
        hyps = [h.split() for h in (select / f"{split}.hyp.lm.phn").read_text().splitlines()]
        assert len(hyps) == 8
        refs = [r.split() for r in (pipeline / "audio" / f"{split}.phn").read_text().splitlines()]
        assert results["splits"][split]["per_lm"] == pytest.approx(phone_error_rate(hyps, refs))
    assert "per_lm" not in (select / "selection.tsv").read_text().splitlines()[0]


def _phones(text_dir: Path, **decoder):
    from w2v.config.structure import structure_component
    from w2v.plugins.wav2vec_u.words import PhoneDecoding

    spec = structure_component("decoder", {"name": "ctc_beam", "lexicon": None, "lm": "auto",
                                           "beam": 20, "word_score": 0.0, **decoder},
                               path="stages.select.phone_decoder")
    dictionary = Dictionary.load(text_dir / "dict.phn.txt")
    return PhoneDecoding.from_spec(spec, text_dir, dictionary), dictionary


def test_the_phone_lm_corrects_a_phone_viterbi_gets_wrong(text_dir):
    """CAT spelled with its vowel a little less likely than a phone the text never puts
    between k and t: Viterbi (and the decoder without LM weight) take the wrong phone, the
    phone LM restores the spelling the unpaired text has."""
    from w2v.plugins.wav2vec_u.selection import viterbi_phones

    lexicon = _lexicon(text_dir)
    k, vowel, t = lexicon["CAT"]
    wrong = next(p for p in ("ɪ", "iː", "ʊ", "ɛ") if p != vowel and
                 p in Dictionary.load(text_dir / "dict.phn.txt"))
    segments = [{"<SIL>": 6.0}, {k: 6.0}, {wrong: 3.0, vowel: 2.6}, {t: 6.0}, {"<SIL>": 6.0}]
    with_lm, dictionary = _phones(text_dir, lm_weight=2.0)
    logits, lengths = _logits(dictionary, segments)
    viterbi = [[dictionary[i] for i in ids]
               for ids in viterbi_phones(logits, lengths, dictionary)]
    assert viterbi == [[k, wrong, t]]
    assert with_lm.decode_phones(logits, lengths) == [[k, vowel, t]]
    without, _ = _phones(text_dir, lm_weight=0.0)
    assert without.decode_phones(logits, lengths) == [[k, wrong, t]]


def test_a_phone_decoder_with_a_lexicon_is_a_config_error(text_dir):
    from w2v.errors import ConfigError

    with pytest.raises(ConfigError, match="takes no lexicon"):
        _phones(text_dir, lexicon="auto")
