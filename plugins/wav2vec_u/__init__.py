"""Built-in plugin family `wav2vec_u`: unsupervised speech recognition from unpaired audio and
text (Baevski et al. 2021, wav2vec-U; Liu et al. 2022, wav2vec-U 2.0).

* :mod:`.generator`: the phone generator (a ``head`` over segment features);
* :mod:`.discriminator`, :mod:`.objective`: the adversarial objective that owns the
  discriminator, with :mod:`.penalties` and :mod:`.segmentation` (JOIN);
* :mod:`.selection`: Viterbi phones, the unsupervised checkpoint metric, PER.
"""

W2V_PLUGIN_API = "1.0"
