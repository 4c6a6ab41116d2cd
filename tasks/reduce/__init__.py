"""Map stage: the reducers (embeddings (n, d) -> a 2-D map (n, 2)), their registry, and the map step.

The reducers register on import and import their libraries only when they run.
The step (``tasks.reduce.stage``: the map cache and the Prefect task) imports
Prefect, so only the stages that run it import it; ``tasks.config`` reads the
reducers' names from here on the command line's way to refusing a bad flag.
"""

# In registration order, the default first: the command line's help and the Prefect UI list them so.
from tasks.reduce._tsne import TsneReducer  # noqa: I001
from tasks.reduce._pca import PcaReducer
from tasks.reduce._umap import UmapReducer, umap_class
from tasks.reduce._base import REDUCERS, Reducer, build_reducer

__all__ = ["REDUCERS", "PcaReducer", "Reducer", "TsneReducer", "UmapReducer", "build_reducer", "umap_class"]
