"""ft-infer: generate a completion for every record until its stop token.

    from ft_infer import GenerationOptions, infer, make_engine
    engine = make_engine("hf", "ckpt/best", GenerationOptions(max_new_tokens=128))
    for record in infer(records, engine):
        ...
"""

from ft_infer.batching import Stats, infer
from ft_infer.engines import make_engine, pick_engine
from ft_infer.types import GenerationOptions, Request, Result

__all__ = ["GenerationOptions", "Request", "Result", "Stats", "infer", "make_engine", "pick_engine"]
