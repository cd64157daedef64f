"""The README.txt written into every demo corpus."""

README = """\
w2v demo corpus (built by `w2vrun demo-data`; see meta.json for what made it)

Audio: audio/<split>/*.wav, 16 kHz mono 16-bit PCM.

Splits
  unlabeled   synthetic speech for pretraining (no transcripts written)
  train       labeled synthetic speech
  valid, test labeled; held-out sentences AND held-out speakers (never heard in
              train or unlabeled; see meta.json "speakers")
  real        real human speech (Debian pocketsphinx-testdata), when installed

Files (one utterance per line, manifest order)
  <split>.tsv        fairseq manifest: first line the absolute root, then rel/path<TAB>num_samples
  <split>.wrd        words (upper case, normalised: numbers, abbreviations spelled out)
  <split>.ltr        letters, fairseq style: T H E | C A T |
  <split>.phn        IPA phones (espeak-ng en-us G2P via phonemizer, no stress)
  <split>.align.tsv  phone alignment: PHONE,START,END segments (samples at 16 kHz, END
                     exclusive), contiguous from 0 to num_samples; pauses are `sil`.
                     The phones the engine actually spoke, mapped to dict.phn.txt.
  <split>.info.tsv   header line, then key, engine, voice, speaker, rate, pitch, speed
  dict.ltr.txt       fairseq dictionary of letters (counts over train)
  dict.phn.txt       fairseq dictionary of phones (counts over train + unpaired)
  unpaired.txt       text for wav2vec-U, disjoint from every labeled sentence
  unpaired.phn       its phones
  lm.txt             word-LM text: unpaired + train transcripts (no valid/test sentence)
  meta.json          engines, versions, voices and speakers per split, sizes, seed, timings
  DONE               written last; a directory without it is incomplete
"""
