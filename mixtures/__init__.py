"""Source mixtures for pretraining (``curate.mixtures``): ``curate mix`` and the reader the trainer uses.

    from curate.mixtures import MixtureDataset
    ds = MixtureDataset("MIX")            # len(ds), ds[i] -> np.int64[seq_len + 1], ds.shard(rank, world)
"""

from curate.mixtures.dataset import MixtureDataset, MixtureError

__all__ = ["MixtureDataset", "MixtureError", "build_mixture", "load_config"]


def __getattr__(name: str):
    # building pulls in pyarrow and the tokenizer modules; a trainer that only reads does not need them
    if name == "build_mixture":
        from curate.mixtures.build import build_mixture

        return build_mixture
    if name == "load_config":
        from curate.mixtures.config import load_config

        return load_config
    raise AttributeError(name)
