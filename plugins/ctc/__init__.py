"""Built-in plugin family `ctc`: CTC fine-tuning head and objective, greedy and
lexicon + KenLM beam-search decoders, Kneser-Ney ARPA language models, WER/CER.

Build context the registered components take:

* head ``ctc``: the context signal and
  ``dictionary=`` (required: its size and blank).
* objective ``ctc``: ``dictionary=`` (a Dictionary or a ``dict.ltr.txt`` path;
  optional: without it the blank is 0 and no word errors are reported). Its
  forward needs a model with a :class:`~w2v.plugins.ctc.head.CTCHead` as
  ``model.head`` (``model.head: {name: ctc}`` or :func:`attach_ctc_head`) and
  batches with ``targets``; with ``apply_mask`` also ``model.masker``.
* decoders ``ctc_greedy`` / ``ctc_beam``: ``dictionary=`` (required); ``decode``
  takes emissions ``[B, T, len(dictionary)]``.

Commands ``w2vrun transcribe`` and ``w2vrun evaluate`` (:mod:`.commands`); a
model with a CTC head transcribes through ``model.transcribe(wave)``
(:mod:`.transcribe`: greedy or LM decoding, long audio in chunks).
"""

from w2v import hookimpl

from .head import CTCHead, attach_ctc_head, emissions, force_blank

W2V_PLUGIN_API = "2.0"

__all__ = ["CTCHead", "attach_ctc_head", "emissions", "force_blank"]


@hookimpl
def w2v_register_components(registrar):
    from .decoders import CTCBeamDecoder, CTCGreedyDecoder
    from .objective import CTCObjective

    registrar.add_component(
        "head", "ctc", CTCHead, smoke={"dropout": 0.1},
        help="final dropout + Linear(D, |dictionary|); padded frames forced to blank")
    registrar.add_component(
        "objective", "ctc", CTCObjective, smoke={"apply_mask": False},
        help="CTC loss over the model's CTC head (fairseq wav2vec_ctc fine-tuning)")
    registrar.add_component(
        "decoder", "ctc_greedy", CTCGreedyDecoder, smoke={},
        help="greedy (best-path) CTC decoding")
    # flashlight-text's wheel carries KenLM: the `kenlm` Python package is not needed
    registrar.add_component(
        "decoder", "ctc_beam", CTCBeamDecoder, smoke={"beam": 4},
        help="CTC beam search with a lexicon and a KenLM n-gram (flashlight-text)",
        requires=["flashlight-text"], extra="decode")


@hookimpl
def w2v_register_commands(registrar):
    from .commands import (EVALUATE_HELP, TRANSCRIBE_HELP, configure_evaluate,
                           configure_transcribe, run_evaluate, run_transcribe)

    registrar.add_command("transcribe", configure_transcribe, run_transcribe,
                          help=TRANSCRIBE_HELP)
    registrar.add_command("evaluate", configure_evaluate, run_evaluate, help=EVALUATE_HELP)
