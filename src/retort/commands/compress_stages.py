"""How ``retort compress`` trains one candidate (issue #30): its stages, each a ``retort distill`` run folder
under ``OUT/candidates``, and the transfer sets they learn from.

Every task stage (multilevel) learns from the training rows plus a transfer set many times their number, labelled
by the teacher (``TRANSFER``): word-edited copies of the rows, and for a pair task with ``--corpus`` pairs mined
from the corpus beside them. A candidate below the quality floor on the held-out rows then takes further rounds
while it stays below and ``--hours`` allows, each on from the round before over more copies, the mined pairs so
far and as many fresh ones again (the next seed), at a lower rate; a round that does not improve on the one before
ends them. This is the #30 probes' recipe (``docs/results.md``): on STS-B it took a pruned 4x192 student from
93.4% of the teacher (general stage, task stage on the rows, a small transfer stage) to 96.1% on held-out rows in
two rounds with no general stage (a third round's first epoch: 96.6%), and a pruned 3x256 TREC student past the
floor in its first epoch. With ``--hours`` time left after every candidate, the one that would ship (predicted to
meet the budget, over the floor, fewest parameters) takes the rounds too, while each improves: a student just over
the floor on the held-out rows can fall under it on unseen rows (STS-B's 3x256-f512, 97.5% of the teacher held out
and 96.9% on dev, with 73 of its 156 minutes unspent; docs/results.md). A pruned candidate of a task without mined
pairs takes TinyBERT's general stage first when ``--corpus`` is given (the teacher's intermediate layers on corpus
text, no labels).

Every stage keeps its best epoch on rows carved from the training set, and the stage that scores best there
is the one kept. A finished stage is never trained again, so a stopped search goes on where it
stopped. One progress line a stage says how far the plan is and what is left, from the plan's predicted
training times corrected by the stages measured so far; with ``--hours``, a candidate whose stages cannot
finish inside what is left is not started.
"""

from __future__ import annotations

import json
from pathlib import Path

from retort.commands.train import train
from retort.config import TrainConfig, from_dict
from retort.data.tasks import carve, get_task, load_split
from retort.errors import ConfigError

GENERAL = {"epochs": 1, "batch_size": 32, "lr": 1e-4, "eval_every": 100}  # the general stage's recipe (frontier's)
# The transfer sets as multiples of the training rows: the task stage's word-edited copies and mined pairs
# (copies instead where no pairs are mined); each further round's copies, the pairs so far and ``fresh`` ones,
# for ``epochs`` at ``lr`` times the task stage's rate, one share a round (rounds 2 and 3).
TRANSFER = {"task": {"copies": 4, "mined": 3},
            "lift": {"copies": 6, "fresh": 4, "epochs": 2, "lr": (0.6, 0.4)}}  # fmt: skip
ROUNDS = tuple(range(2, 2 + len(TRANSFER["lift"]["lr"])))  # the rounds after the task stage (its round 1)


def mines_pairs(task, corpus: str | None) -> bool:
    """Whether a task's transfer sets hold pairs mined from the corpus: a pair task with ``--corpus``."""
    return bool(corpus) and task.is_pair


def stages(cand: dict, out: Path, corpus: str | None, pairs: bool = False) -> list[tuple[str, Path]]:
    """(stage, run folder) of one candidate: ``general`` first for a pruned one when a corpus is given and
    its task mines no ``pairs`` from it."""
    root = out / "candidates" / cand["name"]
    general = corpus is not None and cand["start"] != "teacher layers" and not pairs
    return [*([("general", root / "general")] if general else []), ("task", root / "task" if general else root)]


def round_dir(cand: dict, out: Path, k: int) -> Path:
    """The run folder of a candidate's transfer round ``k`` (beside its own, not inside a run folder)."""
    return out / "candidates" / f"{cand['name']}+round{k}"


def stage_chain(cand: dict, out: Path, corpus: str | None, pairs: bool) -> list[tuple[str, Path, str]]:
    """A candidate's task stage and its transfer rounds, trained or not: (stage, run folder, the label its
    shipped form is saved under: the candidate's name for the task stage, the folder's for a round)."""
    rounds = [(f"round {k}", round_dir(cand, out, k)) for k in ROUNDS]
    return [("task", stages(cand, out, corpus, pairs)[-1][1], cand["name"])] + [(n, d, d.name) for n, d in rounds]


def best_val(run_dir: Path, metric: str) -> float | None:
    """A finished run's best score on its held-out rows (``--val-split``), else None."""
    try:
        return float(json.loads((run_dir / "metrics.json").read_text())["best"]["val"][metric])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stage_config(cand: dict, stage: str, run_dir: Path, plan: dict, s: dict) -> TrainConfig:
    """The ``retort distill`` run of one stage (``s``: the search's settings; ``s["transfer"]``, the transfer
    set's specs of a task or transfer stage)."""
    common = {"kind": "distill", "task": plan["task"], "data": s["data"], "glue_dir": s["glue_dir"],
              "teacher": plan["teacher_folder"], "student": f"{cand['layers']}x{cand['hidden']}",
              "threads": s["threads"], "seed": s["seed"], "out": str(run_dir),
              "objective": {"method": "multilevel"}}  # fmt: skip
    pruned = {"student_heads": cand["heads"], "student_intermediate": cand["ffn"], "student_init": "prune"}
    # only the shipped model is scored on dev, once (``compress_search._score_once``); a stage with a transfer
    # set keeps no teacher cache: a cache of every layer of every input costs the disk (11 GB for 15,522 inputs)
    if stage == "general":
        values = {**common, **pruned, **GENERAL, "general": True, "corpus": s["corpus"],
                  "corpus_sequences": s["corpus_sequences"]}  # fmt: skip
    elif stage.startswith("round"):  # round k on from s["from_dir"]'s model, its rate a share of s["task_dir"]'s
        task_cfg = json.loads((s["task_dir"] / "metrics.json").read_text()).get("config") or {}
        lift, k = TRANSFER["lift"], int(stage.removeprefix("round"))
        values = {**common, "student_init": str(s["from_dir"] / "model"), "transfer": list(s["transfer"]),
                  "epochs": lift["epochs"], "val_split": s["val_split"], "score_dev": False, "cache_teacher": "none",
                  "lr": float(task_cfg.get("lr", TrainConfig.lr)) * lift["lr"][k - 2]}  # fmt: skip
    else:
        general = run_dir.parent / "general" / "model"
        start = ({"student_init": "teacher"} if cand["start"] == "teacher layers" else
                 {"student_init": str(general)} if general.is_dir() else pruned)  # fmt: skip
        sets = {"transfer": list(s["transfer"])} if s.get("transfer") else {}
        values = {**common, **start, **sets, "epochs": s["epochs"], "val_split": s["val_split"], "score_dev": False,
                  "cache_teacher": "none"}  # fmt: skip
    return from_dict(TrainConfig, values, "compress")


def seconds_of(run_dir: Path) -> float:
    """Wall seconds a stage's run took (finished: metrics.json; stopped half-way: its checkpoint), else 0."""
    for path, inside in ((run_dir / "metrics.json", None), (run_dir / "checkpoint" / "trainer_state.json", "state")):
        try:
            data = json.loads(path.read_text())
            return float((data[inside] if inside else data).get("wall_seconds") or 0.0)  # a checkpoint nests it
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            continue
    return 0.0


def _clock(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def train_candidates(plan: dict, out: Path, s: dict) -> tuple[list[str], dict[str, str]]:
    """Train every planned candidate's stages that are not done, in the plan's order, with one progress line
    a stage, each candidate's rounds below the floor after its task stage, then with ``--hours`` time left the
    rounds of the one that would ship (``likely_shipped``); returns the candidates finished and, for the
    others, why not (the ``--hours`` budget)."""
    s = {**s, "pairs": mines_pairs(get_task(plan["task"]), s["corpus"]) if "task" in plan else False}
    cands = [next(c for c in plan["candidates"] if c["name"] == n) for n in plan["train"]]
    todo = [(c, stage, d) for c in cands for stage, d in stages(c, out, s["corpus"], s["pairs"])]
    predicted = {(c["name"], st): c.get("train_s", {}).get(st, 0.0) for c, st, _ in todo}
    budget = s["hours"] * 3600 if s["hours"] else None
    finished, skipped = [], {}

    def spent_so_far() -> float:  # every stage's wall seconds, the transfer rounds included
        return sum(seconds_of(d) for _, _, d in todo) + sum(seconds_of(round_dir(c, out, k)) for c in cands
                                                             for k in ROUNDS)  # fmt: skip

    for i, (cand, stage, run_dir) in enumerate(todo, 1):
        if cand["name"] in skipped:
            continue
        done = [(c["name"], st, d) for c, st, d in todo if (d / "metrics.json").is_file()]
        spent = spent_so_far()
        took = sum(seconds_of(d) for _, _, d in done)
        guessed = sum(predicted[(n, st)] for n, st, _ in done)
        scale = took / guessed if guessed > 0 and took > 0 else 1.0  # the estimates, corrected by what was measured
        left = [(c["name"], st) for c, st, d in todo[i - 1:] if not (d / "metrics.json").is_file()
                and c["name"] not in skipped]  # fmt: skip
        if not (run_dir / "metrics.json").is_file():
            own = sum(predicted[k] for k in left if k[0] == cand["name"]) * scale - seconds_of(run_dir)
            if budget is not None and spent + own > budget:
                skipped[cand["name"]] = (f"not trained: its stages ({_clock(own)} predicted) would not finish inside "
                                         f"--hours {s['hours']:g} ({_clock(spent)} spent)")  # fmt: skip
                print(f"[compress] {cand['name']}: {skipped[cand['name']]}", flush=True)
                continue
            eta = sum(predicted[k] for k in left) * scale - seconds_of(run_dir)
            sets = transfer_sets(plan, out, s, "task") if stage == "task" else []
            print(f"[compress] stage {i}/{len(todo)}: {cand['name']} {stage} stage into {run_dir}"
                  f"{' with ' + ' '.join(sets) if sets else ''}; {_clock(spent)} spent, about {_clock(max(eta, 0))} "
                  "left", flush=True)  # fmt: skip
            cfg = stage_config(cand, stage, run_dir, plan, {**s, "transfer": sets})
            train(cfg, resume=(run_dir / "checkpoint" / "trainer_state.json").is_file(), progress=False)
        if stage == "task":
            finished.append(cand["name"])
            if s.get("floor") is not None:
                lift(cand, run_dir, out, plan, s, lambda: None if budget is None else budget - spent_so_far())
    ship = likely_shipped(plan, [c for c in cands if c["name"] in finished], out, s) if budget is not None else None
    if ship is not None:  # --hours left after every candidate: spent on the one that would ship, over its floor
        lift(ship, stages(ship, out, s["corpus"], s["pairs"])[-1][1], out, plan, s, lambda: budget - spent_so_far(),
             polish=True)  # fmt: skip
    return finished, skipped


def likely_shipped(plan: dict, finished: list[dict], out: Path, s: dict) -> dict | None:
    """The finished candidate that would ship as things stand: predicted to meet the budget, over the floor on
    the held-out rows as it ships at its best stage so far, the fewest parameters; None without a floor."""
    if s.get("floor") is None or s.get("judge") is None:
        return None
    over = []
    for cand in finished:
        chain = stage_chain(cand, out, s["corpus"], s["pairs"])
        best = max(s["judge"](label, d) for _, d, label in chain if (d / "metrics.json").is_file())
        if cand.get("meets") and best >= s["floor"]:
            over.append(cand)
    return min(over, key=lambda c: c["parameters"]) if over else None


def lift(cand: dict, task_dir: Path, out: Path, plan: dict, s: dict, left, polish: bool = False) -> None:
    """The transfer rounds of a candidate whose task stage missed the floor on the held-out rows: each on from
    the round before while it stays below the floor (``polish``: over it too), improved on the round before it,
    and the time ``left()`` (seconds; None: no limit) allows it. Scores are ``s["judge"](label, run_dir)``'s,
    the stage's model as it ships (its int8 export loses a little), else its best held-out score in PyTorch."""
    ran = json.loads((task_dir / "metrics.json").read_text())
    seen = int(ran["train_examples"]) * max(ran.get("epochs") or s["epochs"], 1)  # rows the task stage stepped over
    pace = {
        "row_s": seconds_of(task_dir) / max(seen, 1),
        "rows": int(ran["train_examples"]) - int(ran.get("transfer_examples") or 0),
    }  # the task's own rows
    before, prev, label = None, task_dir, cand["name"]
    judge = s.get("judge") or (lambda _, run_dir: best_val(run_dir, s["primary"]))  # as shipped, else in PyTorch
    for k in ROUNDS:
        target = round_dir(cand, out, k)
        score = judge(label, prev) if (prev / "metrics.json").is_file() else None
        if score is None or (score >= s["floor"] and not polish) or (before is not None and score <= before):
            return
        if not (target / "metrics.json").is_file():
            say = f"[compress] {cand['name']}: held-out {s['primary']} {score:.4f} " + (
                "over the floor, the one that would ship, --hours left; " if polish else f"< floor {s['floor']:.4f}; "
            )
            if not _round(cand, k, {"task_dir": task_dir, "from_dir": prev}, target, plan, {**s, "out": out},
                          pace, left, say):  # fmt: skip
                return
        before, prev, label = score, target, target.name


def _round(cand: dict, k: int, dirs: dict, target: Path, plan: dict, s: dict, pace: dict, left, say: str) -> bool:
    """Train transfer round ``k`` into ``target`` when its predicted time (the task stage's ``pace`` a row, by
    the sets' lengths) fits in ``left()``; False when it does not."""
    rows, task = pace["rows"], get_task(plan["task"])

    def cost(inputs: dict[str, float]) -> float:  # the rows and each transfer set by its length, an epoch
        return pace["row_s"] * TRANSFER["lift"]["epochs"] * (rows + sum(inputs.values())) - seconds_of(target)

    def too_long(own: float) -> bool:
        time_left = left()
        if time_left is not None and own > time_left:
            print(f"{say}no round {k} ({_clock(own)} predicted, {_clock(max(time_left, 0))} left of --hours)",
                  flush=True)  # fmt: skip
        return time_left is not None and own > time_left

    if too_long(cost({"all": rows * transfer_times(k)})):
        return False  # each input as long as a row: checked before anything is mined
    sets = transfer_sets(plan, s["out"], s, k, rows)
    own = cost({spec: _rows_of(spec) * length_ratio(spec, task, s) for spec in sets})
    if too_long(own):
        return False
    print(f"{say}transfer round {k} with {' '.join(sets)} into {target}, about {_clock(own)}", flush=True)
    cfg = stage_config(cand, f"round{k}", target, plan, {**s, **dirs, "transfer": sets})
    train(cfg, resume=(target / "checkpoint" / "trainer_state.json").is_file(), progress=False)
    return True


def _rows_of(spec: str) -> int:
    """How many inputs a transfer spec holds: ``aug:TASK:N``'s N, a file's lines."""
    if spec.startswith("aug:"):
        return int(spec.rsplit(":", 1)[1])
    with open(spec, encoding="utf-8") as f:
        return sum(1 for _ in f)


def length_ratio(source: str, task, s: dict) -> float:
    """How much longer a transfer input is than a training row, in characters (1 for copies of the rows):
    mined Wikipedia pairs run longer than STS-B's, and a step costs by length."""
    if source.startswith("aug:"):
        return 1.0
    with open(source, encoding="utf-8") as f:
        lines = [len(line.rstrip("\n").replace("\t", "")) for _, line in zip(range(5000), f)]
    texts = list(training_texts(task, s["glue_dir"], s["val_split"], s["seed"]))
    mine = sum(map(len, texts)) / max(len(texts) / len(task.text_columns), 1)  # characters a row
    return (sum(lines) / max(len(lines), 1)) / max(mine, 1.0)


def transfer_times(stage: int | str) -> int:
    """Every transfer input of a stage (``task``, or round ``k`` after it) as a multiple of the training rows."""
    first, lift = TRANSFER["task"], TRANSFER["lift"]
    if stage == "task":
        return first["copies"] + first["mined"]
    return lift["copies"] + first["mined"] + lift["fresh"] * (int(stage) - 1)


def transfer_sets(plan: dict, out: Path, s: dict, stage: int | str, rows: int | None = None) -> list[str]:
    """The transfer specs of a stage (``task``, or round ``k`` after it) for ``rows`` training rows (default
    the plan's): word-edited copies and, with ``s["pairs"]``, pairs mined from the corpus, each round adding
    pairs mined with the next seed; without pairs, copies in their place."""
    task, rows = get_task(plan["task"]), rows or int(plan["train_rows"])
    first, lift = TRANSFER["task"], TRANSFER["lift"]
    if not s["pairs"]:
        return [f"aug:{task.name}:{transfer_times(stage) * rows}"]
    mined = transfer_set(plan, out, s, first["mined"] * rows)
    if stage == "task":
        return [f"aug:{task.name}:{first['copies'] * rows}", mined]
    fresh = [transfer_set(plan, out, s, lift["fresh"] * rows, draw=j) for j in range(1, int(stage))]
    return list(dict.fromkeys([f"aug:{task.name}:{lift['copies'] * rows}", mined, *fresh]))


def transfer_set(plan: dict, out: Path, s: dict, rows: int, draw: int = 0) -> str:
    """``rows`` transfer inputs: for a pair task with ``--corpus``, pairs mined from it with the teacher as the
    embedder (made once, ``OUT/transfer/``; ``draw`` j > 0 mines other pairs with the seed plus j); else
    ``aug:TASK:rows``, word-edited copies of the rows trained on."""
    task = get_task(plan["task"])
    if task.is_pair and s["corpus"]:
        from retort.distill.mining import mine_corpus  # noqa: PLC0415  (torch)

        path = out / "transfer" / f"mined-{rows}{f'-draw{draw}' if draw else ''}.tsv"
        if not path.is_file():
            try:
                mine_corpus([s["corpus"]], path, rows, plan["teacher_folder"], seed=s["seed"] + draw)
            except ConfigError as e:  # a corpus too small for that many pairs: the task's own copies instead
                print(f"[compress] no pairs mined from the corpus ({e}); augmented copies instead", flush=True)
                return f"aug:{task.name}:{rows}"
        return str(path)
    return f"aug:{task.name}:{rows}"


def training_texts(task, glue_dir, val_split: float, seed: int):
    """Every text of the training rows the candidates learn from (the carve's other side)."""
    return (t for ex in carve(load_split(task, "train", glue_dir), val_split, seed)[0].examples for t in ex.texts)
