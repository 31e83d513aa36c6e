"""Owns console log storage: a task's lines in numbered blocks, and one head per task that maps time to blocks.

- pending lines (``database/events/pending.py``): each add call's lines of a task are inserted with its
  scalar points in one document; every few calls the task's pending lines are folded (``_fold``) onto
  the blocks, in time order. A page reads them too, and readers of the whole log fold first.
- ``event_log_blocks``: one document per task and block number (``seq``) holding up to
  ``block_lines`` lines (fewer when they are long), appended to by folds.
- ``event_log_heads``: one document per task: the folded line count, the last block, and per block
  the earliest and latest timestamp (packed). A page of lines before or after a timestamp is found in
  the head and read from the one or two blocks that hold it, so a page costs the same whatever the
  length of the log. Only a fold (under the task's fold lease) and a clear write the head, with a
  version check (optimistic: a concurrent writer re-reads and retries).

The documents' shapes are declared in ``database/model/event.py``; their indexes are made here.
"""

from __future__ import annotations

import logging
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

from bson import Binary
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from apiserver.database.events.pending import PendingEvents
from apiserver.database.model.base import new_id
from apiserver.database.model.event import LOG, LogBlock, LogHead

log = logging.getLogger(__name__)

LINE_FIELDS = ("timestamp", "msg", "level", "worker", "iter", "metric", "variant")  # the last two: when given
_NEVER = 2**62  # t0 of an emptied block: it is never before any timestamp
_LINE_OVERHEAD = 100  # bytes a line costs in a block besides its message


class LogStore:
    """A task's console lines: appending them, reading pages and scrolls of them, clearing them."""

    def __init__(self, block_lines: int, block_bytes: int, pending: PendingEvents):
        self.block_lines = block_lines
        self.block_bytes = block_bytes
        self.pending = pending
        pending.folders.append(self._fold)

    @property
    def blocks(self):
        return LogBlock._get_collection()

    @property
    def heads(self):
        return LogHead._get_collection()

    def ensure_indexes(self) -> None:
        self.blocks.create_index([("task", 1), ("seq", 1)])
        self.blocks.create_index([("company", 1), ("task", 1)])
        self.heads.create_index([("company", 1)])

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def pending_lines(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Log events as the pending documents' lines, per task."""
        per_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for ev in events:
            line = {k: ev[k] for k in LINE_FIELDS if ev.get(k) is not None}
            line["id"] = ev.get("_id") or new_id()
            line["timestamp"] = int(ev["timestamp"])
            per_task[ev["task"]].append(line)
        return dict(per_task)

    def _fold(self, company: str, task: str, docs: list[dict[str, Any]], _state: dict[str, Any]
              ) -> dict[str, dict[str, Any]]:
        """The folder of pending documents (``PendingEvents``): their lines, in time order, appended after
        the task's last line, topping up its last block while that has room. The places are taken on the
        head first (version-checked, as ``clear`` writes it too), then the lines are appended."""
        lines = [line for doc in docs for line in doc.get("lines") or ()]
        if not lines:
            return {}
        lines.sort(key=lambda line: line["timestamp"])
        placed = self._reserve(company, task, lines)
        self.blocks.bulk_write([UpdateOne({"_id": f"{task}:{seq}"},
                                          {"$setOnInsert": {"company": company, "task": task, "seq": seq},
                                           "$push": {"lines": {"$each": chunk}}, "$inc": {"n": len(chunk)}},
                                          upsert=True)
                                for seq, chunk in placed.items()], ordered=False)
        return {}

    def _reserve(self, company: str, task: str, lines: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        """Assign the lines to blocks on the task's head: the last block while it has room, then new
        ones; returns {seq: lines}."""
        for _attempt in range(50):
            head, t0, t1 = self._head(task)
            seq, open_n, open_bytes = (head["seq"], head["open_n"], head["open_bytes"]) if head else (0, 0, 0)
            placed: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for line in lines:
                size = len(line.get("msg") or "") + _LINE_OVERHEAD
                if open_n and (open_n >= self.block_lines or open_bytes + size > self.block_bytes):
                    seq, open_n, open_bytes = seq + 1, 0, 0
                while len(t0) <= seq:
                    t0.append(_NEVER)
                    t1.append(-_NEVER)
                t0[seq], t1[seq] = min(t0[seq], line["timestamp"]), max(t1[seq], line["timestamp"])
                open_n, open_bytes = open_n + 1, open_bytes + size
                placed[seq].append(line)
            fields = {"seq": seq, "open_n": open_n, "open_bytes": open_bytes, "ver": uuid4().hex,
                      "t0": Binary(array("q", t0).tobytes()), "t1": Binary(array("q", t1).tobytes()),
                      "total": (head or {}).get("total", 0) + len(lines)}
            if head is None:
                try:
                    self.heads.insert_one({"_id": task, "company": company, "task": task, **fields})
                    return placed
                except DuplicateKeyError:
                    continue
            if self.heads.update_one({"_id": task, "ver": head["ver"]}, {"$set": fields}).matched_count:
                return placed
        raise RuntimeError(f"log head of task {task} kept changing under 50 attempts")

    # -- reads --------------------------------------------------------------------------------

    def _head(self, task: str) -> tuple[dict[str, Any] | None, list[int], list[int]]:
        head = self.heads.find_one({"_id": task})
        if head is None:
            return None, [], []
        return head, array("q", bytes(head["t0"])).tolist(), array("q", bytes(head["t1"])).tolist()

    def total(self, task: str) -> int:
        """The task's lines, pending ones included."""
        head = self.heads.find_one({"_id": task}, {"total": 1})
        return (head["total"] if head else 0) + sum(d.get("nl", 0) for d in self.pending.of_task(task, {"nl": 1}))

    def _read(self, task: str, seqs: list[int]) -> dict[int, list[dict[str, Any]]]:
        found = self.blocks.find({"_id": {"$in": [f"{task}:{s}" for s in seqs]}}, {"seq": 1, "lines": 1})
        return {d["seq"]: d.get("lines", []) for d in found}

    def page(self, task: str, size: int, earlier: bool, from_ts: int | None) -> tuple[list[dict[str, Any]], int]:
        """``size`` lines before ``from_ts`` newest first (``earlier``), or after it oldest first; and the
        total. Pending lines count as a block after the last one."""
        head, t0, t1 = self._head(task)
        pending = [line for doc in self.pending.of_task(task, {"lines": 1}) for line in doc.get("lines") or ()]
        if head is None and not pending:
            return [], 0
        if earlier:
            candidates = [k for k in range(len(t0)) if from_ts is None or t0[k] < from_ts]
            candidates.reverse()
            keep = (lambda ts: ts < from_ts) if from_ts is not None else (lambda ts: True)
        else:
            candidates = [k for k in range(len(t1)) if t1[k] > -_NEVER and (from_ts is None or t1[k] > from_ts)]
            keep = (lambda ts: ts > from_ts) if from_ts is not None else (lambda ts: True)
        after_last = len(t0)  # the pending lines' place in the order of blocks
        collected: list[tuple[int, int, int, dict[str, Any]]] = [
            (line["timestamp"], after_last, n, line) for n, line in enumerate(pending) if keep(line["timestamp"])]
        collected.sort(key=lambda c: c[:3], reverse=earlier)
        step = size // self.block_lines + 2
        pos = 0
        while pos < len(candidates) and not self._page_complete(collected, size, candidates[pos:], t0, t1, earlier):
            chunk = candidates[pos:pos + step]
            pos += step
            for seq, lines in self._read(task, chunk).items():
                collected.extend((line["timestamp"], seq, n, line) for n, line in enumerate(lines)
                                 if keep(line["timestamp"]))
            collected.sort(key=lambda c: c[:3], reverse=earlier)
        total = (head["total"] if head else 0) + len(pending)
        return [_as_event(task, c[3]) for c in collected[:size]], total

    @staticmethod
    def _page_complete(collected: list, size: int, rest: list[int], t0: list[int], t1: list[int],
                       earlier: bool) -> bool:
        """Whether a page of ``size`` lines is complete: blocks further on may only matter if their lines
        overlap it in time."""
        if len(collected) < size:
            return False
        edge = collected[size - 1][0]
        return not any((t1[k] > edge) if earlier else (t0[k] < edge) for k in rest)

    def scroll(self, task: str, position: list | None, limit: int, descending: bool
               ) -> tuple[list[dict[str, Any]], list | None]:
        """Lines in stored order (or its reverse) from ``position`` ([block, offset]); every line once.
        Pending lines are folded first."""
        self.pending.fold(task, wait=True)
        head, t0, _ = self._head(task)
        if head is None:
            return [], None
        seqs = list(range(len(t0)))
        if descending:
            seqs.reverse()
        start_seq, offset = position or (seqs[0] if seqs else 0, 0)
        seqs = [s for s in seqs if (s <= start_seq if descending else s >= start_seq)]
        out: list[dict[str, Any]] = []
        step = limit // self.block_lines + 2
        for i in range(0, len(seqs), step):
            chunk = seqs[i:i + step]
            blocks = self._read(task, chunk)
            for seq in chunk:
                lines = blocks.get(seq, [])
                if descending:
                    lines = lines[::-1]
                skip = offset if seq == start_seq else 0
                take = lines[skip:skip + limit - len(out)]
                out.extend(_as_event(task, line) for line in take)
                if len(out) >= limit:
                    return out, [seq, skip + len(take)]
        return out, None

    def selected_page(self, task: str, chosen: Callable[[dict[str, Any]], bool], size: int, earlier: bool,
                      from_ts: int | None) -> tuple[list[dict[str, Any]], int]:
        """``page`` among the lines ``chosen`` keeps (lines of some metrics), and their total. The head
        knows no metrics, so this reads the whole log: for the rare reader that filters a log by metric."""
        lines = sorted((line for line in self.all_lines(task) if chosen(line)), key=lambda line: line["timestamp"])
        total = len(lines)
        if earlier:
            lines = [line for line in reversed(lines) if from_ts is None or line["timestamp"] < from_ts]
        else:
            lines = [line for line in lines if from_ts is None or line["timestamp"] > from_ts]
        return lines[:size], total

    def metric_variants(self, task: str) -> dict[str, set[str]]:
        """The metrics (with their variants) that lines of the task name; a whole-log read, as above."""
        out: dict[str, set[str]] = defaultdict(set)
        for line in self.all_lines(task):
            if line.get("metric") is not None:
                out[line["metric"]].add(line.get("variant") or "")
        return out

    def all_lines(self, task: str) -> Iterator[dict[str, Any]]:
        """Every line of the task, block after block, each block's lines in time order (pending lines
        folded first)."""
        self.pending.fold(task, wait=True)
        _head, t0, _ = self._head(task)
        for i in range(0, len(t0), 50):
            blocks = self._read(task, list(range(i, min(i + 50, len(t0)))))
            for seq in sorted(blocks):
                for line in sorted(blocks[seq], key=lambda line: line["timestamp"]):
                    yield _as_event(task, line)

    # -- deletes ------------------------------------------------------------------------------

    def delete_task(self, company: str, task: str) -> int:
        """Delete the task's folded lines (its pending ones are ``PendingEvents.delete_task``'s); returns
        how many lines it had, pending ones included."""
        deleted = self.total(task)
        self.blocks.delete_many({"company": company, "task": task})
        self.heads.delete_many({"_id": task, "company": company})
        return deleted

    def clear(self, company: str, task: str, cutoff_ms: int | None = None, include: list[str] | None = None,
              exclude: list[str] | None = None) -> int:
        """Delete the lines older than ``cutoff_ms`` (None: of any time) whose metric is among ``include``
        (None: any) and not among ``exclude``; returns how many were deleted. Lines appended meanwhile
        stay (each block loses its lines by a ``$pull`` of the same condition)."""
        pull: dict[str, Any] = {}
        if cutoff_ms is not None:
            pull["timestamp"] = {"$lt": cutoff_ms}
        if include is not None or exclude is not None:
            pull["metric"] = {**({"$in": include} if include is not None else {}),
                              **({"$nin": exclude} if exclude is not None else {})}

        def gone(line: dict[str, Any]) -> bool:
            return (cutoff_ms is None or line["timestamp"] < cutoff_ms) \
                and (include is None or line.get("metric") in include) \
                and (exclude is None or line.get("metric") not in exclude)

        self.pending.fold(task, wait=True)
        for _attempt in range(50):
            head, t0, t1 = self._head(task)
            if head is None:
                return 0
            deleted = 0
            for seq in [k for k in range(len(t0)) if cutoff_ms is None or t0[k] < cutoff_ms]:
                block = self.blocks.find_one({"_id": f"{task}:{seq}"}, {"lines": 1})
                lines = (block or {}).get("lines", [])
                kept = [line for line in lines if not gone(line)]
                deleted += len(lines) - len(kept)
                if block is not None and len(kept) < len(lines):
                    self.blocks.update_one({"_id": block["_id"]},
                                           {"$pull": {"lines": pull}, "$inc": {"n": len(kept) - len(lines)}})
                t0[seq] = min((line["timestamp"] for line in kept), default=_NEVER)
                t1[seq] = max((line["timestamp"] for line in kept), default=-_NEVER)
            fields = {"t0": Binary(array("q", t0).tobytes()), "t1": Binary(array("q", t1).tobytes()),
                      "total": max(0, head["total"] - deleted), "ver": uuid4().hex}
            if self.heads.update_one({"_id": task, "ver": head["ver"]}, {"$set": fields}).matched_count:
                return deleted
        raise RuntimeError(f"log head of task {task} kept changing under 50 attempts")


def _as_event(task: str, line: dict[str, Any]) -> dict[str, Any]:
    out = {k: line[k] for k in LINE_FIELDS if k in line}
    out.update({"id": line.get("id"), "task": task, "type": LOG})
    return out
