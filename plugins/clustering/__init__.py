"""Built-in plugin family `clustering`: seeded k-means, PCA and segment pooling over
feature frames, the audio side of wav2vec-U's preparation (fairseq
``wav2vec_cluster_faiss.py``, ``pca.py``, ``merge_clusters.py``, ``mean_pool.py``)
and the units of PNMI measurements. Pure functions over ``[N, D]`` tensors; no
component registered.
"""

from .kmeans import KMeans, fit_kmeans
from .pca import PCA, fit_pca
from .pooling import mean_pool_pairs, merge_runs

W2V_PLUGIN_API = "2.0"

__all__ = ["KMeans", "PCA", "fit_kmeans", "fit_pca", "mean_pool_pairs", "merge_runs"]
