"""What finished runs and benchmarks show, as tables, figures and the evidence page (``retort report``).

- ``tables``: fixed-width and Markdown tables, a run's metrics, the one-row-per-run summary of run folders.
- ``records``: the one reader of run folders (``RunRecord``, ``find_runs``, ``load_run``, ``load_runs``)
  and of ``retort bench --json`` files (``read_bench``, ``attach_bench``).
- ``stats``: the page's numbers: the method table over seeds, averages, the share of the teacher, paired
  tests, the temperature sweep, loss curves, learned per-layer weights.
- ``charts``: the page's figures, drawn from those numbers.
- ``render``: ``Page``, a list of blocks rendered as HTML and as Markdown.
- ``page``: ``write_report``, the evidence page section by section.
- ``figures``: one training run's loss and layer-weight plots from its ``log.jsonl``.
- ``speed``: the tables and chart of ``retort bench`` results.
"""
