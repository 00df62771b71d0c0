"""Keeps the patient index in step with every Patient write, whichever way it arrives.

A ``PatientIndex`` watches the writes of one unit of work (REST, transaction, feed worker all
write through the same ``Writer``).  For each member record written it decides which person the
record belongs to: a shared exact key links at once; a probabilistic match above the link
threshold links, between the thresholds it only asks the office (a review Task); a valid key
that conflicts never links.  The record gets ``link: refer`` to its master; masters whose
records changed are rebuilt once, just before the unit's writes are flushed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from hub.fhir.errors import Unprocessable
from hub.services.identity import index_store as store
from hub.services.identity import lookup
from hub.services.identity.features import Features, features
from hub.services.identity.master import build_master, retired_master
from hub.services.identity.model import (
    INVALID_IDENTIFIER,
    MASTER_PREFIX,
    PATIENT_INDEX,
    is_master_id,
    patient_id,
    ref,
)
from hub.services.identity.rules import MatchRules, load_rules
from hub.services.identity.scoring import NEAR_NAME_MAX, Match, decision, score
from hub.store.locks import lock_keys
from hub.store.repository import Writer, read_current


def own_links(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's links that the sender owns: all but those to a master (the index's)."""
    return [
        link
        for link in resource.get("link") or []
        if not is_master_id(patient_id(link.get("other")) or "")
    ]


def key_systems(rules: MatchRules) -> frozenset[str]:
    return frozenset(k.system or k.system_prefix or "" for k in rules.keys) - {""}


def resident_id_systems(rules: MatchRules) -> frozenset[str]:
    return frozenset(k.system for k in rules.keys if k.kind == "resident-id" and k.system)


def birth_block_can_reach_review(rules: MatchRules) -> bool:
    """Whether a record sharing only birth date and sex (another name key, no common phone) can
    score up to a review at all.  With the shipped weights it cannot, so that block, the
    widest of all, is searched only for records with a mistyped ID (whose match is found
    through the ID's nearness, see scoring)."""
    w = rules.weights
    return w.name * NEAR_NAME_MAX + w.birth_date + w.gender + w.address >= rules.review


# What ``features`` reads of a Patient (none of it a reference, which a transaction rewrites).
_FEATURE_FIELDS = ("identifier", "name", "gender", "birthDate", "telecom", "address")


def _feature_fields(resource: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(resource.get(name) for name in _FEATURE_FIELDS)


# Lock names: (exclusive, shared).
Names = tuple[list[str], list[str]]


def _refer(master: str) -> dict[str, Any]:
    return {"other": ref(master), "type": "refer"}


def _links_merge(resource: dict[str, Any]) -> bool:
    return any(link.get("type") == "replaced-by" for link in resource.get("link") or [])


def new_master_id() -> str:
    return MASTER_PREFIX + uuid.uuid4().hex[:24]


@dataclass
class _Review:
    patient_id: str
    candidate_id: str
    match: Match


@dataclass
class PatientIndex:
    conn: Connection
    rules: MatchRules = field(default_factory=load_rules)
    types: frozenset[str] = frozenset({"Patient", "Task"})
    # Member records written in this unit (their resources are not in the table yet).
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    retired: dict[str, str] = field(default_factory=dict)  # old master → the one it joined
    relinked: set[str] = field(default_factory=set)  # records whose refer link must change
    reviews: list[_Review] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Merges the unit asked for (a Patient written with a new replaced-by link).
    merges: list[tuple[str, str]] = field(default_factory=list)
    # Master ids this unit made up: no resource of theirs exists yet.
    new_masters: set[str] = field(default_factory=set)
    # Lock names this unit holds already, True where only shared: not asked for again.
    held: dict[str, bool] = field(default_factory=dict)
    # Features worked out by ``lock_ahead``, by record id, with the fields they were read from.
    ahead: dict[str, tuple[tuple[Any, ...], Features]] = field(default_factory=dict)
    # Records ``lock_ahead`` saw: id, whether it is new to the index, features, lock names.
    arriving: list[tuple[str, bool, Features, frozenset[str]]] = field(default_factory=list)
    # Candidates looked up for several new records at once (``locked_ahead``), by record id,
    # with the features they were looked up for.  Valid while the unit has written no index
    # row a later look-up could find other than the records themselves: any other write
    # (a fold, an existing record changed, a delete) drops them all.
    candidates: dict[str, tuple[Features, store.Candidates]] = field(default_factory=dict)

    # -- the Writer's hooks --

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict[str, Any]:
        if resource["resourceType"] == "Task":
            from hub.services.identity.reviews import on_task_write

            self.candidates.clear()  # a review's outcome may link or part records
            on_task_write(self, writer, resource, res_id)
            return resource
        if is_master_id(res_id) or any(
            t.get("system") == PATIENT_INDEX and t.get("code") == "master"
            for t in (resource.get("meta") or {}).get("tag") or []
        ):
            raise Unprocessable(
                f"Patient/{res_id} is a master record kept by the patient index; write the "
                "member's own record instead (or use $merge, $link, $unlink)",
                code="business-rule",
            )
        return self.index_record(resource, res_id, fresh=writer.fresh("Patient", res_id))

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        if res_type != "Patient":
            return
        self.candidates.clear()
        row = store.load(self.conn, res_id)
        if row is None:
            return
        store.set_master(self.conn, res_id, row.master_id, row.method, active=False)
        store.set_keys(self.conn, res_id, row.features.keys, {})
        self.dirty.add(row.master_id)

    def before_flush(self, writer: Writer) -> None:
        self.candidates.clear()
        if self.merges:
            from hub.services.identity.merge import apply_merge

            merges, self.merges = self.merges, []
            for source, target in merges:
                apply_merge(self, writer, source, target)
        if self.reviews:
            from hub.services.identity.reviews import create_review_tasks

            reviews, self.reviews = self.reviews, []
            create_review_tasks(self, writer, reviews)
        self._write_masters(writer)

    def lock_ahead(self, writes: list[tuple[dict[str, Any], str, bool]]) -> Names:
        """The names that linking these records (resource, id, whether it is being created:
        about to be written) locks: (exclusive, shared).

        A transaction takes them all at once, in one sorted statement, before it writes any.
        Taken one record at a time instead, two transactions each writing new patients took
        them in their own orders and deadlocked whenever both held a name the other wanted
        (two records born the same day are common): PostgreSQL stalled both for its
        deadlock timeout, a second, then aborted one."""
        exclusive: list[str] = []
        shared: list[str] = []
        for resource, res_id, fresh in writes:
            if resource.get("resourceType") != "Patient" or is_master_id(res_id):
                continue
            feats = features(resource, self.rules)
            self.ahead[res_id] = (_feature_fields(resource), feats)
            wanted = self._lock_names(feats)
            self.arriving.append((res_id, fresh, feats, frozenset(name for name, _ in wanted)))
            more, more_shared = self._to_lock(wanted)
            exclusive.extend(more)
            shared.extend(more_shared)
        return exclusive, shared

    def locked_ahead(self) -> None:
        """Once ``lock_ahead``'s names are held: the candidates of the records new to the
        index, looked up together (one round trip instead of one a record).

        Only for records that share no lock name with another record of the unit, so none
        can be a candidate of another: looked up one at a time, each would have found
        exactly what the shared look-up finds."""
        arriving, self.arriving = self.arriving, []
        seen: dict[str, int] = {}
        for *_, names in arriving:
            for name in names:
                seen[name] = seen.get(name, 0) + 1
        alone = [
            (res_id, feats)
            for res_id, fresh, feats, names in arriving
            if fresh and all(seen[name] == 1 for name in names)
        ]
        if len(alone) < 2:
            return
        found = store.keyed_and_blocked_many(
            self.conn,
            [(feats, res_id, self._by_birth(feats)) for res_id, feats in alone],
            self.rules.max_candidates,
        )
        for (res_id, feats), rows in zip(alone, found, strict=True):
            if rows is not None:
                self.candidates[res_id] = (feats, rows)

    def _to_lock(self, wanted: list[tuple[str, bool]]) -> Names:
        """Of a record's lock names (``_lock_names``), those this unit does not hold yet in
        that mode, as (exclusive, shared), counted as held from now (a failure to take them
        ends the unit)."""
        exclusive: list[str] = []
        shared: list[str] = []
        for name, share in wanted:
            had = self.held.get(name)  # None: not held; True: shared; False: exclusive
            if had is False or (had and share):
                continue
            (shared if share else exclusive).append(name)
            self.held[name] = share
        return exclusive, shared

    def _features(self, resource: dict[str, Any], res_id: str) -> Features:
        early = self.ahead.pop(res_id, None)
        if early is not None and early[0] == _feature_fields(resource):
            return early[1]
        return features(resource, self.rules)

    # -- linking one record --

    def index_record(
        self, resource: dict[str, Any], res_id: str, *, fresh: bool = False
    ) -> dict[str, Any]:
        """``fresh``: the record is being created, so the index cannot hold it yet."""
        if not fresh:
            self.candidates.clear()  # it may change a record others' look-ups found
        feats = self._features(resource, res_id)
        resource = self._flag_invalid(resource, feats)
        row = None if fresh else store.load(self.conn, res_id)
        if (
            row is not None
            and row.features == feats
            and row.active == (resource.get("active", True) is not False)
            and not row.replaced_by
            and not _links_merge(resource)
        ):
            # The usual feed write: a known record, nothing the index looks at has changed.
            digest = store.digest(
                store.features_json(feats),
                [resource.get("generalPractitioner"), row.active, row.master_id],
            )
            if digest == row.digest:
                resource = {**resource, "link": [*own_links(resource), _refer(row.master_id)]}
                self.written[res_id] = resource
                return resource
        # The locks serialise linking the same person; for a record new to the index they are
        # taken in the round trip of its candidate query (``_decide``).
        names = self._to_lock(self._lock_names(feats))
        if row is not None:  # read again under the locks
            lock_keys(self.conn, *names)
            names = ([], [])
            row = store.load(self.conn, res_id)
        links = own_links(resource)
        survivor = next(
            (patient_id(link.get("other")) for link in links if link.get("type") == "replaced-by"),
            None,
        )
        if survivor is None and row is not None and row.replaced_by:
            # Merged away earlier: a later write of the retired record keeps it retired.
            survivor = row.replaced_by
            links.append({"other": ref(survivor), "type": "replaced-by"})
            resource = {**resource, "active": False}
        if survivor == res_id:
            raise Unprocessable(f"Patient/{res_id} cannot be replaced by itself", code="invalid")

        if survivor is not None:
            self.candidates.clear()
            lock_keys(self.conn, *names)
            target = self.ensure_indexed(survivor)
            master, method, match_score, active = target.master_id, "merge", None, False
            if row is None or row.replaced_by != survivor:
                self.merges.append((res_id, survivor))
        else:
            master, method, match_score = self._decide(res_id, feats, row, names)
            active = resource.get("active", True) is not False

        feats_json = store.features_json(feats)
        digest = store.digest(feats_json, [resource.get("generalPractitioner"), active, master])
        store.save(
            self.conn,
            res_id,
            master_id=master,
            method=method,
            score=match_score,
            active=active,
            replaced_by=survivor,
            feats=feats,
            feats_json=feats_json,
            digest_value=digest,
            existed=row is not None,
            old_keys=row.features.keys if row else None,
            new_keys=feats.keys,
        )
        if row is None or row.digest != digest or row.master_id != master:
            self.dirty.add(master)
            if row is not None and row.master_id != master:
                self.dirty.add(row.master_id)
        resource = {**resource, "link": [*links, {"other": ref(master), "type": "refer"}]}
        self.written[res_id] = resource
        return resource

    def _decide(
        self, res_id: str, feats: Features, row: store.IndexRow | None, lock: Names
    ) -> tuple[str, str, float | None]:
        """(master, method, score) for a record that is not merged away; ``lock``: the
        names still to lock before anything is read."""
        if row is not None:
            lock_keys(self.conn, *lock)
        if row is not None and row.method == "manual":
            return row.master_id, "manual", row.score
        # A record new to the index can be in no pair the office kept apart.
        distinct = store.distinct_from(self.conn, res_id) if row is not None else set()
        by_birth = self._by_birth(feats)
        limit = self.rules.max_candidates
        blocked: list[store.IndexRow] | None = None
        early = self.candidates.pop(res_id, None) if row is None else None
        if early is not None and early[0] is feats:
            keyed, blocked = early[1]
        elif row is None:  # a new record needs both sets unless a key links it: one query
            keyed, blocked = store.keyed_and_blocked(
                self.conn,
                feats,
                res_id,
                limit,
                by_birth=by_birth,
                lock=lock[0],
                lock_shared=lock[1],
            )
        else:
            keyed = store.by_keys(self.conn, feats.keys, res_id)
        # 1. exact keys
        masters: list[str] = []
        for other in keyed:
            if other.patient_id in distinct:
                continue
            if score(feats, other.features, self.rules).grade == "certainly-not":
                continue
            if other.master_id not in masters:
                masters.append(other.master_id)
        if masters:
            target = row.master_id if row is not None and row.master_id in masters else masters[0]
            for other_master in masters:
                if other_master != target:
                    self._fold(other_master, target)
            return target, "key", 1.0
        # 2. the record's present person still fits it: stay (no flapping between persons)
        if row is not None and self._fits(res_id, feats, row.master_id, distinct):
            return row.master_id, row.method, row.score
        # 3. probabilistic
        best: dict[str, tuple[Match, str]] = {}
        if blocked is None:
            blocked = store.blocking_candidates(self.conn, feats, res_id, limit, by_birth=by_birth)
        for other in blocked:
            if other.patient_id in distinct:
                continue
            match = score(feats, other.features, self.rules)
            held = best.get(other.master_id)
            if held is None or match.score > held[0].score:
                best[other.master_id] = (match, other.patient_id)
        ranked = sorted(best.items(), key=lambda item: -item[1][0].score)
        for candidate_master, (match, candidate_record) in ranked:
            verdict = decision(match, self.rules)
            if verdict == "link" and self._fits(res_id, feats, candidate_master, distinct):
                return candidate_master, "score", match.score
            if verdict == "review":
                self.reviews.append(_Review(res_id, candidate_record, match))
                break
        if row is not None and not self._shared(row.master_id, res_id):
            return row.master_id, "self", None
        master = new_master_id()
        self.new_masters.add(master)
        return master, "self", None

    def _fits(self, res_id: str, feats: Features, master: str, distinct: set[str]) -> bool:
        """No other record of the person is known to be someone else."""
        for other in store.records_of(self.conn, [master]):
            if other.patient_id == res_id or not other.active:
                continue
            if other.patient_id in distinct:
                return False
            if score(feats, other.features, self.rules).grade == "certainly-not":
                return False
        return True

    def _shared(self, master: str, res_id: str) -> bool:
        return any(
            r.patient_id != res_id and r.active for r in store.records_of(self.conn, [master])
        )

    def _fold(self, old_master: str, new_master: str) -> None:
        """Two persons turned out to be one (a record carried both their keys)."""
        self.candidates.clear()
        for moved in store.move_records(self.conn, old_master, new_master):
            self.relinked.add(moved)
        self.retired[old_master] = new_master
        self.dirty.add(new_master)

    def ensure_indexed(self, res_id: str) -> store.IndexRow:
        self.candidates.clear()
        row = store.load(self.conn, res_id)
        if row is not None:
            return row
        resource = self.written.get(res_id)
        if resource is None:
            current = read_current(self.conn, "Patient", res_id)
            if current is None or current.content is None:
                raise Unprocessable(f"Patient/{res_id} is not known", code="not-found")
            resource = orjson.loads(current.content)
        self.index_record(resource, res_id)
        self.relinked.add(res_id)
        row = store.load(self.conn, res_id)
        assert row is not None
        return row

    def _flag_invalid(self, resource: dict[str, Any], feats: Features) -> dict[str, Any]:
        """A resident ID that fails its check is marked on the record and never linked on."""
        if not feats.invalid_ids:
            return resource
        bad = set(feats.invalid_ids)
        idents = []
        for ident in resource.get("identifier") or []:
            if (
                isinstance(ident, dict)
                and ident.get("value") in bad
                and ident.get("system") in resident_id_systems(self.rules)
                and not any(e.get("url") == INVALID_IDENTIFIER for e in ident.get("extension", []))
            ):
                ident = {
                    **ident,
                    "extension": [
                        *ident.get("extension", []),
                        {"url": INVALID_IDENTIFIER, "valueCode": "check-digit"},
                    ],
                }
                self.warnings.append(
                    f"resident ID {ident['value']!r} is not valid; it is kept, flagged, and "
                    "not used to link records"
                )
            idents.append(ident)
        return {**resource, "identifier": idents}

    def _by_birth(self, feats: Features) -> bool:
        """Whether linking this record looks for candidates born the same day (the birth
        block: for a record whose ID is invalid, or where the rules let it reach a review)."""
        return bool(feats.invalid_ids) or birth_block_can_reach_review(self.rules)

    def _lock_names(self, feats: Features) -> list[tuple[str, bool]]:
        """(name, shared) for each lock that keeps records which could find each other
        (hub.services.identity.index_store: exact keys and blocks) from being linked at once,
        each unaware of the other.  Records that cannot find each other should not wait for
        each other: a common name born another year, or a birthday shared by records that
        neither look for candidates by birth date, share their locks."""
        names = [(f"mpi:{kind}:{value}", False) for kind, value in feats.keys.items()]
        if feats.name_key:
            if feats.birth_date:
                # Found by that year's name block and by dateless searches of the name.
                names.append((f"mpi:name:{feats.name_key}", True))
                names.append((f"mpi:name:{feats.name_key}:{feats.birth_date[:4]}", False))
            else:
                # Without a stored date it is in every year's block of its name.
                names.append((f"mpi:name:{feats.name_key}", False))
        if feats.birth_date:
            # Only a record that searches the birth block needs those already in it to wait.
            names.append((f"mpi:birth:{feats.birth_date}", not self._by_birth(feats)))
        names.extend((f"mpi:phone:{phone}", False) for phone in sorted(feats.phones))
        return names

    # -- masters --

    def _write_masters(self, writer: Writer) -> None:
        for old, new in list(self.retired.items()):
            self._put(writer, retired_master(old, new), old)
            self.dirty.discard(old)
        self.retired.clear()
        for res_id in sorted(self.relinked):
            self._relink(writer, res_id)
        self.relinked.clear()
        dirty, self.dirty = sorted(self.dirty), set()
        if not dirty:
            return
        rows = store.records_of(self.conn, dirty)
        contents = self.contents([r.patient_id for r in rows])
        by_master: dict[str, list[store.IndexRow]] = {}
        for row in rows:
            by_master.setdefault(row.master_id, []).append(row)
        for master in dirty:
            members = by_master.get(master, [])
            ordered = sorted(
                members,
                key=lambda r: (
                    not r.active,
                    "resident-id" not in r.features.keys,
                    -int(r.patient_id in self.written),
                    r.patient_id,
                ),
            )
            records = [(r.patient_id, contents.get(r.patient_id, {}), r.active) for r in ordered]
            self._put(writer, build_master(master, records, key_systems(self.rules)), master)

    def contents(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Patient JSON by id: as written in this unit, else as stored."""
        out = {i: self.written[i] for i in ids if i in self.written}
        out.update(lookup.contents(self.conn, [i for i in ids if i not in out]))
        return out

    def _put(self, writer: Writer, resource: dict[str, Any], res_id: str) -> None:
        """Write a hub-kept resource, only when it changed; once per unit (rewritten after)."""
        if writer.written("Patient", res_id):
            writer.rewrite(resource, res_id)
            return
        if res_id in self.new_masters:
            self.new_masters.discard(res_id)
            writer.create(resource, res_id, observe=False)
            return
        current = read_current(self.conn, "Patient", res_id)
        if (
            current is not None
            and current.content
            and _same(orjson.loads(current.content), resource)
        ):
            return
        writer.update(resource, res_id, observe=False)

    def _relink(self, writer: Writer, res_id: str) -> None:
        """A record whose person changed after it was written: point its refer link anew."""
        row = store.load(self.conn, res_id)
        if row is None:
            return
        resource = self.contents([res_id]).get(res_id)
        if resource is None:
            return
        links = own_links(resource)
        updated = {**resource, "link": [*links, {"other": ref(row.master_id), "type": "refer"}]}
        if updated["link"] == resource.get("link"):
            return
        self.written[res_id] = updated
        self._put(writer, updated, res_id)
        self.dirty.add(row.master_id)


def _same(stored: dict[str, Any], resource: dict[str, Any]) -> bool:
    """Equal but for the server's versionId and lastUpdated."""

    def bare(res: dict[str, Any]) -> dict[str, Any]:
        meta = {
            k: v
            for k, v in (res.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")
        }
        return {**{k: v for k, v in res.items() if k != "meta"}, "meta": meta}

    return bare(stored) == bare(resource)
