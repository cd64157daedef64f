"""Built-in plugin family `interop`: the plumbing every checkpoint importer shares, whatever
the paper: the restricted unpickler for fairseq files (:mod:`.unpickle`), fairseq configs and
pickle scans (:mod:`.fairseq_files`), Hugging Face directories (:mod:`.hf_files`) and
``.safetensors`` (:mod:`.safetensors_io`), total key mapping with its report (:mod:`.keymap`),
strict loading into a built model (:mod:`.loading`) and one-line errors for damaged files
(:mod:`.malformed`). The importers themselves live with their paper's family
(``wav2vec2``: fairseq, Hugging Face, torchaudio; ``wav2vec``: fairseq wav2vec 1.0 /
vq-wav2vec). No component is registered.
"""

W2V_PLUGIN_API = "2.0"
