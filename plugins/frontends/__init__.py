"""Built-in plugin family `frontends`: hand-crafted feature front ends (the log-mel baseline,
MFCCs for k-means targets)."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from .logmel import LogMelEncoder
    from .mfcc import MfccEncoder

    registrar.add_component(
        "encoder", "logmel", LogMelEncoder, smoke={"num_mel_bins": 8, "dim": 4},
        help="Kaldi-compatible log-mel filterbanks (80 x 25 ms / 10 ms) with per-utterance CMVN")
    registrar.add_component(
        "encoder", "mfcc", MfccEncoder, smoke={"num_mel_bins": 8, "num_ceps": 4},
        help="Kaldi-compatible MFCCs (13 x 25 ms / 10 ms) with deltas: HuBERT's and wav2vec-U "
             "2.0's k-means target features")
