"""What every handler thread shares: the dataset, the filter cache, counters, request log, settings.

Requests are numbered here (faults and moves are timed by that number), scheduled moves are
applied here, and runtime reconfiguration (validated by :func:`.config.validate_changes`) and
mutations (drawn by :mod:`.mutations`) are applied here, all under one lock.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, cast

from .config import DATE_RE, SandboxConfig, parse_iso_date, validate_changes
from .data import generate_records
from .moves import RecordMove
from .mutations import MutationSpec, apply_mutations
from .query import Filters, filter_records
from .ratelimit import RateLimiter
from .requestlog import RequestLog

__all__ = ["SandboxState"]

_CACHE_SIZE = 8


def _end_date_key(record: Mapping[str, Any]) -> tuple[str, int]:
    return (cast(str, record["sessionEndsOn"]), cast(int, record["id"]))


def _record_id(record: Mapping[str, Any]) -> int:
    return cast(int, record["id"])


def _moved(record: Mapping[str, Any], target: date) -> dict[str, Any]:
    """A copy of ``record`` ending on ``target``, its start shifted by the same delta."""
    moved = dict(record)
    old_end = parse_iso_date("sessionEndsOn", record["sessionEndsOn"])  # validated when added
    moved["sessionEndsOn"] = target.isoformat()
    starts = record.get("sessionStartsOn")
    if isinstance(starts, str) and DATE_RE.fullmatch(starts):
        with contextlib.suppress(ValueError, OverflowError):
            moved["sessionStartsOn"] = (date.fromisoformat(starts) + (target - old_end)).isoformat()
    return moved


def _max_id(records: Sequence[Mapping[str, Any]], floor: int) -> int:
    # Records are in id order, so the last one holds the highest id.
    return max(floor, _record_id(records[-1])) if records else floor


def _check_move_ids(moves: Sequence[RecordMove], records: list[dict[str, Any]]) -> None:
    for move in moves:
        index = bisect.bisect_left(records, move.id, key=_record_id)
        if index == len(records) or records[index]["id"] != move.id:
            raise ValueError(f"moves: no record with id {move.id}")


class SandboxState:
    """Dataset, filter cache, counters and settings shared by every handler thread.

    Data changes replace the records list (and a moved record's dict) instead of mutating
    them, so a handler that already holds a filtered list keeps serving a consistent snapshot
    without holding the lock.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.lock = threading.RLock()
        if config.admin_token is None:
            config = dataclasses.replace(config, admin_token=secrets.token_urlsafe(32))
        self.config = config
        self.records: list[dict[str, Any]] = generate_records(
            config.seed, config.records, config.start, config.end
        )
        _check_move_ids(config.moves, self.records)
        self.generation = 0
        # The highest id the dataset ever held: imports never reuse a deleted record's id.
        self.id_high_water = _max_id(self.records, 0)
        self._cache: OrderedDict[tuple[int, str, str, Filters], list[dict[str, Any]]] = (
            OrderedDict()
        )
        self._by_end_date: tuple[int, list[dict[str, Any]]] | None = None
        self.limiter = RateLimiter(config.requests_per_minute)
        self.request_log = RequestLog()
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.faults = 0
        self.faults_by_kind: dict[str, int] = {}
        self.moves_applied = 0
        # Moves of every request number up to this one are applied; ``epoch`` changes on
        # reset-stats so that a request numbered before the reset cannot replay moves.
        self._moves_through = 0
        self.epoch = 0

    @property
    def admin_token(self) -> str:
        return cast(str, self.config.admin_token)

    # -- counters

    def begin_api_request(self) -> tuple[int, int, str | None]:
        """Number the request (1-based) and look up its fault under one lock.

        Returns ``(epoch, number, fault)``; pass ``epoch, number`` to :meth:`end_api_request`.
        Every earlier request counts as answered here, so the moves due after them are in
        place before this request is served, even if an earlier handler is still running.
        """
        with self.lock:
            self._apply_moves_through(self.requests)
            self.requests += 1
            number = self.requests
            schedule = self.config.faults
            fault = schedule.fault_for(number) if schedule is not None else None
            if fault is not None:
                self.faults += 1
                self.faults_by_kind[fault] = self.faults_by_kind.get(fault, 0) + 1
            return self.epoch, number, fault

    def end_api_request(self, epoch: int, number: int) -> None:
        """Request ``number`` is answered (or abandoned): apply the moves due after it."""
        with self.lock:
            if epoch == self.epoch:
                self._apply_moves_through(number)

    def _apply_moves_through(self, number: int) -> None:
        """Apply the moves scheduled after requests ``_moves_through + 1 .. number``."""
        first = self._moves_through + 1
        if number < first:
            return
        self._moves_through = number
        moves = self.config.moves
        if not moves:
            return
        targets: dict[int, date] = {}
        for answered in range(first, number + 1):
            for move in moves:
                target = move.target_after(answered)
                if target is not None:
                    targets[move.id] = target  # a later firing of the same record wins
        if not targets:
            return
        records = self.records
        copied = False
        for record_id, target in targets.items():
            index = bisect.bisect_left(records, record_id, key=_record_id)
            if index == len(records) or records[index]["id"] != record_id:
                continue  # deleted since the move was configured
            if not copied:
                records, copied = list(records), True
            records[index] = _moved(records[index], target)
            self.moves_applied += 1
        if copied:
            self._replace_records(records)

    def count_status(self, status: int) -> None:
        with self.lock:
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "by_status": dict(sorted(self.by_status.items())),
                "faults": self.faults,
                "faults_by_kind": dict(sorted(self.faults_by_kind.items())),
                "moves_applied": self.moves_applied,
                "records": len(self.records),
            }

    def reset_stats(self) -> None:
        """Zero the counters, restart fault and move numbering at 1, empty the rate window and
        the request log.

        Moved records stay where they are; the moves fire again from request 1.
        """
        with self.lock:
            self.requests = 0
            self.by_status = {}
            self.faults = 0
            self.faults_by_kind = {}
            self.moves_applied = 0
            self._moves_through = 0
            self.epoch += 1
            self.limiter.reset()
            self.request_log.clear()

    # -- data

    def _ordered(self) -> list[dict[str, Any]]:
        """The records in the configured API order (the end-date view is kept per generation)."""
        if self.config.order == "id":
            return self.records
        if self._by_end_date is None or self._by_end_date[0] != self.generation:
            self._by_end_date = (self.generation, sorted(self.records, key=_end_date_key))
        return self._by_end_date[1]

    def matching(self, filters: Filters) -> list[dict[str, Any]]:
        """Filtered records for ``filters``, through a small LRU keyed by the fingerprint."""
        with self.lock:
            key = (self.generation, self.config.bounds, self.config.order, filters)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            result = filter_records(self._ordered(), filters, self.config.bounds)
            self._cache[key] = result
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return result

    def describe(self) -> dict[str, Any]:
        with self.lock:
            cfg = self.config
            return {
                "bounds": cfg.bounds,
                "requests_per_minute": cfg.requests_per_minute,
                "faults": cfg.faults.to_dict() if cfg.faults is not None else None,
                "slow_seconds": cfg.slow_seconds,
                "redirect_url": cfg.redirect_url,
                "seed": cfg.seed,
                "records": len(self.records),
                "start": cfg.start.isoformat(),
                "end": cfg.end.isoformat(),
                "order": cfg.order,
                "moves": [move.to_dict() for move in cfg.moves],
                "timeout_window_days": cfg.timeout_window_days,
                "timeout_records": cfg.timeout_records,
                "timeout_delay_seconds": cfg.timeout_delay_seconds,
            }

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate every change first, then apply them all (or none) under the lock."""
        with self.lock:
            validated = validate_changes(self.config, changes)
            new_cfg = validated.config
            records = self.records
            if validated.regenerate:
                records = generate_records(
                    new_cfg.seed, new_cfg.records, new_cfg.start, new_cfg.end
                )
            if validated.delete_ids:
                delete_ids = validated.delete_ids
                records = [r for r in records if r["id"] not in delete_ids]
            if validated.added:
                added_ids = {r["id"] for r in validated.added}
                records = [r for r in records if r["id"] not in added_ids]
                records.extend(validated.added)
                records.sort(key=_record_id)
            if "moves" in changes:  # later data changes may drop a moved record: skipped then
                _check_move_ids(new_cfg.moves, records)

            self.config = new_cfg
            self.limiter.requests_per_minute = new_cfg.requests_per_minute
            if validated.regenerate:
                self.id_high_water = 0
            if records is not self.records:
                self._replace_records(records)
            return self.describe()

    def _replace_records(self, records: list[dict[str, Any]]) -> None:
        """A new dataset for the next requests; pages already answered keep their snapshot."""
        self.records = records
        self.id_high_water = _max_id(records, self.id_high_water)
        self.generation += 1
        self._cache.clear()

    def mutate(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Apply a ``POST /_sandbox/mutate`` body (see :mod:`.mutations`); return the changes.

        Validated in full before anything changes; raises ValueError then. The records are
        replaced like any data change, so a request in flight keeps a consistent snapshot.
        """
        spec = MutationSpec.from_mapping(body)
        with self.lock:
            records, changes = apply_mutations(
                self.records,
                spec,
                default_start=self.config.start,
                default_until=self.config.end + timedelta(days=1),
                next_id=self.id_high_water + 1,
            )
            if changes:
                self._replace_records(records)
            return changes
