"""The restricted fairseq unpickler builds only plain data, and every malformed foreign
checkpoint (fairseq ``.pt``, Hugging Face ``.bin`` / ``.safetensors`` / ``config.json``) stops
with a one-line error that names the file (exit 2 from ``w2vrun``), never a traceback."""

from __future__ import annotations

import collections
import copyreg
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import w2v
from w2v.errors import DataError, UserError
from w2v.plugins.interop.unpickle import StandIn, load_checkpoint, to_plain

transformers = pytest.importorskip("transformers")

MARKER = "feature_extractor.conv_layers.0.0.weight"  # makes load_pretrained pick the importer


# ----------------------------------------------------------------- crafted pickles
def torch_file_with_pickle(path: Path, payload: bytes) -> Path:
    """A torch zip checkpoint whose ``data.pkl`` is ``payload`` (the other records kept)."""
    torch.save({"model": {}}, path)
    with zipfile.ZipFile(path) as z:
        records = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in records if n.endswith("data.pkl"))
    records[pkl] = payload
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(name, data)
    return path


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def build_then(target: bytes, state: bytes) -> bytes:
    """Opcodes that push ``target``, BUILD it with ``state``, drop it, then return a
    fairseq-looking checkpoint."""
    rest = pickle.dumps({"model": {MARKER: 0}, "cfg": None}, protocol=2)[2:]  # no PROTO op
    return pickle.PROTO + b"\x02" + target + state + pickle.BUILD + pickle.POP + rest


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


SLOT_STATE = (pickle.NONE + pickle.EMPTY_DICT + _unicode("most_common") + _unicode("pwned")
              + pickle.SETITEM + pickle.TUPLE2)          # (None, {"most_common": "pwned"})
DICT_STATE = (pickle.EMPTY_DICT + _unicode("most_common") + _unicode("pwned") + pickle.SETITEM)

ATTACKS = {
    # setattr(collections.Counter, "most_common", "pwned") for the whole process
    "counter_class_slots": (glob("collections", "Counter"), SLOT_STATE,
                            lambda: collections.Counter.most_common == "pwned"),
    "ordereddict_class_slots": (glob("collections", "OrderedDict"), SLOT_STATE,
                                lambda: getattr(collections.OrderedDict, "most_common", 0) == "pwned"),
    "torch_parameter_class": (glob("torch.nn.parameter", "Parameter"), SLOT_STATE,
                              lambda: getattr(torch.nn.Parameter, "most_common", 0) == "pwned"),
    # a function's __dict__
    "copyreg_function_dict": (glob("copyreg", "_reconstructor"), DICT_STATE,
                              lambda: getattr(copyreg._reconstructor, "most_common", 0) == "pwned"),
}
"""name -> (opcodes pushing the target, opcodes pushing the state, probe: True once attacked)"""


@pytest.fixture
def untouched_process():
    """Snapshot what the attacks aim at; restore it afterwards whatever happened."""
    targets = [collections.Counter, collections.OrderedDict, torch.nn.Parameter]
    before = [dict(vars(t)) for t in targets]
    func_before = dict(vars(copyreg._reconstructor))
    yield
    for t, saved in zip(targets, before):
        for key in set(vars(t)) - set(saved):
            delattr(t, key)
        for key, value in saved.items():
            if vars(t).get(key) is not value:
                setattr(t, key, value)
    copyreg._reconstructor.__dict__.clear()
    copyreg._reconstructor.__dict__.update(func_before)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_build_on_a_class_or_function_fails_cleanly(tmp_path, untouched_process, attack):
    target, state, probe = ATTACKS[attack]
    assert not probe()
    path = torch_file_with_pickle(tmp_path / "evil.pt", build_then(target, state))
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    assert not probe(), "the file changed the running process"
    message = str(info.value)
    assert str(path) in message and "refuses" in message and len(message.splitlines()) == 1
    assert collections.Counter("abca").most_common(1) == [("a", 2)]


def test_crafted_counter_file_through_load_pretrained(tmp_path, untouched_process):
    target, state, probe = ATTACKS["counter_class_slots"]
    path = torch_file_with_pickle(tmp_path / "evil.pt", build_then(target, state))
    with pytest.raises(UserError, match="refuses"):
        w2v.load_pretrained(path)
    assert not probe()


def test_item_opcodes_only_reach_containers(tmp_path, untouched_process):
    # OrderedDict (the class) ["most_common"] = "pwned" and list.append on a class
    setitem = (pickle.PROTO + b"\x02" + glob("collections", "OrderedDict") + _unicode("most_common")
               + _unicode("pwned") + pickle.SETITEM + pickle.POP
               + pickle.dumps({"model": {}}, protocol=2)[2:])
    with pytest.raises(DataError, match="refuses"):
        load_checkpoint(torch_file_with_pickle(tmp_path / "a.pt", setitem))
    append = (pickle.PROTO + b"\x02" + glob("collections", "Counter") + _unicode("x")
              + pickle.APPEND + pickle.POP + pickle.dumps({"model": {}}, protocol=2)[2:])
    with pytest.raises(DataError, match="refuses"):
        load_checkpoint(torch_file_with_pickle(tmp_path / "b.pt", append))


class AttrDict(dict):
    """A dict subclass with attributes, as third-party code pickles into checkpoints."""


def test_plain_data_fairseq_needs_still_loads(tmp_path):
    state = collections.OrderedDict([("w", torch.arange(3.0))])
    state._metadata = {"": {"version": 2}}                    # torch state dicts carry this
    extra = AttrDict(a=1, b=[1, 2])
    extra.note = "kept"
    torch.save({"model": state, "best": np.float64(1.5), "arr": np.arange(4),
                "counts": collections.Counter("aab"), "extra": extra,
                "dd": collections.defaultdict(list, {"k": [1]})}, tmp_path / "ok.pt")
    raw = load_checkpoint(tmp_path / "ok.pt")
    assert type(raw["model"]) is collections.OrderedDict and raw["model"]._metadata == \
        {"": {"version": 2}}
    torch.testing.assert_close(raw["model"]["w"], torch.arange(3.0))
    assert float(raw["best"]) == 1.5 and raw["arr"].tolist() == [0, 1, 2, 3]
    assert raw["counts"] == {"a": 2, "b": 1} and raw["dd"]["k"] == [1]
    assert isinstance(raw["extra"], StandIn)                  # a class from the file's world
    assert to_plain(raw["extra"]) == {"note": "kept"} or to_plain(raw["extra"]) == \
        {"a": 1, "b": [1, 2]}
    assert raw["extra"]._items == {"a": 1, "b": [1, 2]}


# ----------------------------------------------------------------- malformed foreign files
def tiny_hf(directory: Path, *, safe: bool) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=[8, 8], conv_kernel=[10, 3],
                         conv_stride=[5, 2], num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2, vocab_size=6)
    Wav2Vec2ForCTC(cfg).save_pretrained(directory, safe_serialization=safe)
    (directory / "vocab.json").write_text(json.dumps(
        {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5}))
    return directory


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def fairseq_file(path: Path, legacy: bool = False) -> Path:
    state = {MARKER: torch.zeros(2, 1, 3), "encoder.pos_conv.0.bias": torch.zeros(2)}
    cfg = {"model": {"_name": "wav2vec2", "encoder_layers": 1}, "task": {}}
    torch.save({"model": state, "cfg": cfg}, path, _use_new_zipfile_serialization=not legacy)
    return path


def _flip(path: Path, positions: range, value: int = 0x5A) -> None:
    data = bytearray(path.read_bytes())
    for i in positions:
        data[i] ^= value
    path.write_bytes(bytes(data))


MALFORMED = {
    # fairseq-shaped .pt
    "fairseq_zip_truncated": lambda d: _truncate(fairseq_file(d / "m.pt"), 0.5) or d / "m.pt",
    "fairseq_legacy_truncated": lambda d: _truncate(fairseq_file(d / "m.pt", True), 0.4)
    or d / "m.pt",
    "fairseq_legacy_flipped": lambda d: _flip(fairseq_file(d / "m.pt", True), range(60, 70))
    or d / "m.pt",
    "fairseq_model_not_a_dict": lambda d: torch_file_with_pickle(d / "m.pt", pickle.dumps(
        {"model": 5, "cfg": {"model": {"_name": "wav2vec2"}}, "x": MARKER}, protocol=2)),
    "fairseq_integer_keys": lambda d: torch_file_with_pickle(d / "m.pt", pickle.dumps(
        {"model": {3: 1, MARKER: 2}, "cfg": {"model": {"_name": "wav2vec2"}}}, protocol=2)),
    "fairseq_unknown_opcode": lambda d: torch_file_with_pickle(
        d / "m.pt", b"\x80\x02}" + _unicode(MARKER) + b"\xf0."),
    # Hugging Face directories
    "hf_bin_truncated": lambda d: _truncate(tiny_hf(d / "hf", safe=False) / "pytorch_model.bin",
                                            0.5) or d / "hf",
    "hf_bin_garbage": lambda d: (tiny_hf(d / "hf", safe=False) / "pytorch_model.bin")
    .write_bytes(b"garbage" * 9) and d / "hf",
    "hf_safetensors_truncated": lambda d: _truncate(
        tiny_hf(d / "hf", safe=True) / "model.safetensors", 0.6) or d / "hf",
    "hf_safetensors_header_list": lambda d: (tiny_hf(d / "hf", safe=True) / "model.safetensors")
    .write_bytes(struct.pack("<Q", 6) + b"[1, 2]") and d / "hf",
    "hf_config_wrong_type": lambda d: _edit_config(tiny_hf(d / "hf", safe=True),
                                                   hidden_size="abc") or d / "hf",
    "hf_config_null": lambda d: _edit_config(tiny_hf(d / "hf", safe=True),
                                             num_hidden_layers=None) or d / "hf",
    "hf_config_not_a_list": lambda d: _edit_config(tiny_hf(d / "hf", safe=True),
                                                   conv_dim=5) or d / "hf",
    "hf_vocab_truncated": lambda d: (tiny_hf(d / "hf", safe=True) / "vocab.json")
    .write_text('{"<pad>": 0, "A"') and d / "hf",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_gives_one_line_error(tmp_path, case):
    path = MALFORMED[case](tmp_path)
    with pytest.raises(UserError) as info:
        w2v.load_pretrained(path)
    message = str(info.value)
    assert str(path) in message, message
    assert len(message.splitlines()) == 1, message


@pytest.mark.parametrize("case", ["fairseq_zip_truncated", "fairseq_legacy_flipped",
                                  "hf_bin_truncated", "hf_config_wrong_type",
                                  "hf_vocab_truncated"])
def test_w2vrun_transcribe_exits_2_on_a_malformed_checkpoint(tmp_path, run_w2vrun, case):
    import soundfile as sf

    path = MALFORMED[case](tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32), 16000)
    result = run_w2vrun("transcribe", str(path), str(wav), "--device", "cpu")
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("w2vrun: error: "), result.err
    assert str(path) in lines[0]
