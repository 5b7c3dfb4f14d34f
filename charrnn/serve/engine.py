"""Many requests, one batched `model.step` per character.

One engine thread owns the batch. Every request's rows (a sample's n streams, a beam
search's live beams) are rows of one recurrent state, laid out job after job:

    state (L, B, H)     rows:  [ job A: 1 | job B: n=3      | job C: beams (1..width) ]
    logits (B, V)              the next-character logits of each row

and each turn of the engine loop is:

    1. admit   jobs that arrived: their prompts are read in (if their request has not done it)
               and their rows appended
    2. drop    jobs whose client went away: their rows are cut out at once
    3. draw    for the sampling jobs, grouped by (temperature, top_k, top_p): one `draw` per
               group, each row with the Gumbel noise of its own request's generator
    4. take    each job gets its characters (or, for beam search, its logits; for a sample that
               scores its tokens, both) and says what its rows read next; finished jobs leave
    5. step    reorder the state rows (finished jobs out, beams reordered by beam index) and
               advance all rows together: logits, state = model.step(tokens, state)

A row's logits do not depend on the other rows, so a request gets the text `charrnn sample`
gives for the same seed and settings (a batched product may round differently from batch 1 in
the last bit of fp32, which changes a draw only where two candidates are that close).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.model.rnn import CharRNN, reorder_state
from charrnn.generation.sampling import draw
from charrnn.serve.jobs import BeamJob, Job, SampleJob


@dataclass
class Group:
    """Sampling jobs with equal settings, drawn in one call."""

    settings: tuple[float, int, float]  # (temperature, top_k, top_p)
    members: list[tuple[SampleJob, int]]  # (job, its first row), in row order
    rows: torch.Tensor | None  # the members' rows of the batch (R,); None when they are every row, in order


@dataclass
class Plan:
    offsets: list[int]  # each job's first row
    groups: list[Group]


class Batcher:
    """The engine: start() it, submit() jobs, cancel() them when their client goes away, stop() it."""

    def __init__(self, model: CharRNN, dtype: torch.dtype = torch.float32):
        self.model, self.dtype = model.eval(), dtype
        self.cond = threading.Condition()
        self.pending: list[Job] = []  # submitted, not yet admitted
        self.jobs: list[Job] = []  # in row order (engine thread only; changed through `_set_jobs`)
        self._cached_plan: Plan | None = None
        self.state: tuple | None = None  # (L, B, H) each
        self.logits: torch.Tensor | None = None  # (B, V)
        self.stopping = False
        self.steps = 0  # shared steps taken (for /health and tests)
        self.thread: threading.Thread | None = None

    @property
    def rows(self) -> int:
        """Rows in the batch now."""
        return 0 if self.logits is None else self.logits.shape[0]

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="charrnn-batcher", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def submit(self, job: Job) -> None:
        """Add a job: it joins the batch before the next step."""
        with self.cond:
            self.pending.append(job)
            self.cond.notify()

    def cancel(self, job: Job) -> None:
        """Its client went away: its rows leave the batch before the next step."""
        job.cancelled = True
        with self.cond:
            self.cond.notify()

    # ---- the engine thread ------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not (self.pending or self.jobs or self.stopping):
                        self.cond.wait()
                    if self.stopping:
                        break
                    arrived, self.pending = self.pending, []
                try:
                    self._admit(arrived)  # 1.
                    self._keep([j for j in self.jobs if not j.cancelled])  # 2.
                    if self.jobs:
                        self._turn()  # 3. - 5.
                except Exception as e:  # a bug must not take the server down: fail these requests, go on
                    for job in {id(j): j for j in self.jobs + arrived}.values():
                        job.fail(f"internal error in the batcher: {type(e).__name__}: {e}")
                    self._set_jobs([])
                    self.state = self.logits = None
        for job in self.jobs + self.pending:
            job.fail("the server is shutting down")

    def _admit(self, arrived: list[Job]) -> None:
        for job in arrived:
            if job.cancelled:
                continue
            job.read_prompt(self.model)  # a short prompt: a few single-row steps (a long one was read already)
            if self.logits is None:
                self.state, self.logits = job.state, job.logits
            else:
                self.state = tuple(torch.cat([s, js], dim=1) for s, js in zip(self.state, job.state))
                self.logits = torch.cat([self.logits, job.logits])
            job.state = job.logits = None  # the batch holds them now
            self._set_jobs(self.jobs + [job])

    def _set_jobs(self, jobs: list[Job]) -> None:
        self.jobs, self._cached_plan = jobs, None

    def _plan(self) -> Plan:
        """Where each job's rows are and how the sampling rows are drawn: worked out again only when
        the jobs change (or every step while a beam search, whose rows come and go, is in the batch)."""
        if self._cached_plan is not None:
            return self._cached_plan
        offsets, at, beams = [], 0, False
        groups: dict[tuple, list[tuple[SampleJob, int]]] = defaultdict(list)
        for job in self.jobs:
            offsets.append(at)
            if isinstance(job, SampleJob):
                groups[job.settings].append((job, at))
            else:
                beams = True
            at += job.rows
        device = self.logits.device
        plan = Plan(offsets, [
            Group(settings, members, None if len(members) == len(self.jobs) else  # every row, in order: no gathering
                  torch.tensor([r for job, at in members for r in range(at, at + job.rows)], device=device))
            for settings, members in groups.items()])
        if not beams:
            self._cached_plan = plan
        return plan

    def _keep(self, jobs: list[Job]) -> None:
        """Cut the batch down to `jobs` (a subsequence of self.jobs, same order)."""
        if len(jobs) == len(self.jobs):
            return
        offsets = dict(zip(map(id, self.jobs), self._plan().offsets))
        index = [r for job in jobs for r in range(offsets[id(job)], offsets[id(job)] + job.rows)]
        self._set_jobs(jobs)
        if not index:
            self.state = self.logits = None
            return
        idx = torch.tensor(index, device=self.logits.device)
        self.state, self.logits = reorder_state(self.state, idx), self.logits.index_select(0, idx)

    def _draw(self, plan: Plan) -> tuple[dict[int, list[int]], torch.Tensor | None]:
        """3. The next characters of every sampling job's rows: one draw per group of equal settings.
        Also the drawn ids as a tensor (B,) when one group holds every row, in order (else None)."""
        drawn, whole = {}, None
        for group in plan.groups:
            (temperature, top_k, top_p), members = group.settings, group.members
            gumbel = None
            if temperature != 0:
                noise = [job.noise.next() for job, _ in members]
                gumbel = torch.cat(noise) if len(noise) > 1 else noise[0]  # (R, V)
            logits = self.logits if group.rows is None else self.logits.index_select(0, group.rows)  # (R, V)
            guards = [job.guard for job, _ in members if job.guard is not None]  # one model: all or none
            if guards:  # bytes that cannot continue valid UTF-8 are never drawn
                allowed = torch.from_numpy(np.concatenate([g.allowed() for g in guards])).to(logits.device)  # (R, V)
                logits = logits.masked_fill(~allowed, float("-inf"))
            chosen = draw(logits, temperature, top_k, top_p, gumbel)  # (R,)
            if group.rows is None:
                whole = chosen
            ids, at = chosen.tolist(), 0
            for job, _ in members:
                drawn[id(job)] = ids[at : at + job.rows]
                at += job.rows
        return drawn, whole

    def _turn(self) -> None:
        plan = self._plan()
        drawn, whole = self._draw(plan)
        # 4. each job takes its step (a beam search: which of its rows continue, and what they read)
        staying, beams = [], {}
        for job, at in zip(self.jobs, plan.offsets):
            if isinstance(job, BeamJob):
                chosen = job.take(self.logits[at : at + job.rows])
                if chosen is not None:
                    beams[id(job)] = chosen
                    staying.append(job)
            elif job.take(drawn[id(job)], None if job.logprobs is None else self.logits[at : at + job.rows]):
                staying.append(job)
        if not staying:
            self._set_jobs([])
            self.state = self.logits = None
            return
        # 5. one step for every row of every request
        device = self.logits.device
        if whole is not None and len(staying) == len(self.jobs):  # the usual turn: every row continues, in order
            tokens = whole
        else:  # rows leave, or are reordered: each row that continues, what it reads and where its state is
            tokens, index = [], []
            offsets = dict(zip(map(id, self.jobs), plan.offsets))
            for job in staying:
                at = offsets[id(job)]
                if id(job) in beams:
                    beam_tokens, beam_idx = beams[id(job)]
                    tokens += beam_tokens.tolist()
                    index += (beam_idx + at).tolist()
                else:
                    tokens += drawn[id(job)]
                    index += range(at, at + job.rows)
            if len(index) != self.rows or beams:
                self.state = reorder_state(self.state, torch.tensor(index, device=device))
            tokens = torch.tensor(tokens, device=device)
        if len(staying) != len(self.jobs):
            self._set_jobs(staying)
        self.logits, self.state = self.model.step(tokens, self.state, self.dtype)
        self.steps += 1
