"""dreamloom's development tools: what builds, measures and checks dreamloom, and never serves a request.

    bench/            ``dreamloom bench ...``: the engine against plain diffusers, the job path's overhead,
                      a newcomer's first job
    demo/             the built-in demo model's world, training recipe, export and evaluator
                      (``python -m devtools.demo.train``); its weights live in engine/models/demo
    tiny_pipelines.py tiny diffusers pipelines built from configs, for tests
    architectures.py  real architectures (configs/) with random weights, for benchmarks

A distribution of its own (``devtools/pyproject.toml``), installed by ``./dev install`` in a checkout and
never by the ``dreamloom`` wheel or the images. bot/, engine/ and tasks/ never import it (an import-linter
contract in pyproject.toml); it imports them.
"""
