"""Runnable examples of threadlog workflows (each module has a ``main()``; run with
``python -m examples.<name>``). They use embedded defaults (an embedded nats-server,
data under ``.threadlog/``) and the offline scripted model; ``tests/examples`` runs
each one."""
