"""progressivenn.model: the model side (torch), plus the numpy-only bundle.

- ``bwb``: BWB weight quantization, activation quantizer, per-k (switchable) BatchNorm
- ``nets``: reference networks (digits, mnist, cifar10) and ``from_sequential`` for your own
- ``data``: datasets as input codes with fixed splits (never downloads)
- ``train``, ``bn_retrain``: QAT (k=N or any-k) and per-k BN retraining
- ``fold``: trained network -> integer (M, B, S) tables; ``bundle``: export format (numpy only)
- ``golden``: the integer golden model (the numeric contract), up to whole networks
- ``evaluate``, ``runs``: accuracy per k; the RUN folder shared by the ``pnn`` commands
"""
