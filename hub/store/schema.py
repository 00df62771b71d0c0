"""Tables of the FHIR store.

One row per logical resource in ``resources`` (its current version, JSON text included so a read
is one index lookup and no re-serialisation), every version in ``resource_history``, and one
family of search-index tables keyed by the resource's surrogate ``rid``.  Index rows belong to
the current version only: an update deletes and rewrites them in the same transaction.

Times are stored as integer microseconds since the Unix epoch (UTC).  That is portable between
SQLite and PostgreSQL, compares correctly in both, and lets a date search be a pair of integer
range comparisons.  Open ends of periods use ``MIN_TIME``/``MAX_TIME``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    literal,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData()

MIN_TIME = -(2**62)
MAX_TIME = 2**62

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer(), "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("rid", RowId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # Current version as the JSON text served on read (meta included); NULL once deleted.
    Column("content", Text, nullable=True),
    Index("ux_resources_type_id", "res_type", "res_id", unique=True),
    Index("ix_resources_type_lastupd", "res_type", "last_updated"),
)


def of_type(res_type: str) -> ColumnElement[bool]:
    """``resources.res_type = '<type>'`` with the type written into the statement.

    Pooled PostgreSQL connections reuse one generic plan per statement (see hub.db), and types
    are skewed: a million DiagnosticReports beside three Subscriptions.  With the type as a
    parameter the generic plan cannot tell them apart and reads a rare type by a sequential
    scan (0.4 s at 1M reports, against 0.05 ms by index).  Use it where a constant type is
    filtered without its id."""
    return resources.c.res_type == literal(res_type, literal_execute=True)


resource_history = Table(
    "resource_history",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # HTTP method that produced the version, for history bundles' entry.request.
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
    Index("ux_history_rid_version", "rid", "version_id", unique=True),
    Index("ix_history_type_lastupd", "res_type", "last_updated"),
    Index("ix_history_lastupd", "last_updated"),
)

# --- search index -------------------------------------------------------------------------
# Every index table carries (rid, param).  ``param`` is the search parameter's code
# (e.g. "identifier", "subject", "_tag").  The leading columns of each index follow the
# searches the hub serves: value first, so ``param = ? AND value = ?`` is one index range.

idx_token = Table(
    "idx_token",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    # Normalised display text (Coding.display, CodeableConcept.text, Identifier.type.text)
    # for the :text modifier.
    Column("text", String(255), nullable=True),
    Index("ix_token_lookup", "res_type", "param", "code", "system"),
    Index("ix_token_rid", "rid", "param"),
)

idx_string = Table(
    "idx_string",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    # Lower-cased, accent-stripped, whitespace-collapsed value for default and :contains.
    Column("norm", String(255), nullable=False),
    # The value as written, for :exact.
    Column("exact", String(255), nullable=False),
    Index("ix_string_lookup", "res_type", "param", "norm"),
    Index("ix_string_rid", "rid", "param"),
)

idx_date = Table(
    "idx_date",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    # Inclusive lower and exclusive upper bound of the implied range, µs since epoch UTC.
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Index("ix_date_lookup", "res_type", "param", "lo", "hi"),
    Index("ix_date_rid", "rid", "param", "lo"),
)

idx_reference = Table(
    "idx_reference",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    # Relative references are split into type and id; absolute ones keep their URL.
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", String(512), nullable=True),
    # One index serves both searches (type, parameter and target all given) and "what points
    # at this resource" (the target alone): the target id leads, as it is the selective part.
    Index("ix_reference_by_target", "target_id", "target_type", "res_type", "param"),
    Index("ix_reference_rid", "rid", "param"),
)

idx_quantity = Table(
    "idx_quantity",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(64), nullable=True),
    Column("unit", String(64), nullable=True),
    # Value converted to the UCUM base unit where the unit is convertible, else NULL.
    Column("canon_value", Float, nullable=True),
    Column("canon_code", String(64), nullable=True),
    Index("ix_quantity_lookup", "res_type", "param", "code", "value"),
    Index("ix_quantity_canon", "res_type", "param", "canon_code", "canon_value"),
    Index("ix_quantity_rid", "rid", "param"),
)

idx_uri = Table(
    "idx_uri",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("uri", String(512), nullable=False),
    Index("ix_uri_lookup", "res_type", "param", "uri"),
    Index("ix_uri_rid", "rid", "param"),
)

idx_number = Table(
    "idx_number",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_number_lookup", "res_type", "param", "value"),
    Index("ix_number_rid", "rid", "param"),
)

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "number": idx_number,
}

# --- feeds --------------------------------------------------------------------------------
# Every message a feed delivers, kept as received before it is acknowledged (commit-ACK
# semantics).  ``accepted`` rows (parsed and mapped) are unique per sender and control id, so a
# resend is recognised; rejected rows are kept for the office and replay but block nothing.

inbox = Table(
    "inbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("transport", String(16), nullable=False),  # mllp, http, file, sql
    Column("peer", String(128), nullable=True),  # remote address, file name, table
    Column("sender", String(64), nullable=False),  # MSH-4 (sending facility), '' if unreadable
    Column("application", String(64), nullable=False, default=""),  # MSH-3
    Column("control_id", String(64), nullable=False),  # MSH-10, '' if unreadable
    Column("message_type", String(32), nullable=False, default=""),  # e.g. ORU^R01
    Column("content_hash", String(64), nullable=False),  # sha256 of the raw bytes
    Column("raw", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("accepted", Boolean, nullable=False),
    # pending → applied | failed (apply error, kept for replay); rejected (never accepted).
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("patient_key", String(300), nullable=True),
    # The mapped transaction Bundle (JSON), so the worker need not map again.
    Column("bundle", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("applied_at", BigInteger, nullable=True),
    # Enhanced mode: MSH-16 (AL, ER, SU) and where the sender takes application ACKs.
    Column("app_ack", String(2), nullable=True),
    Column("reply_to", String(256), nullable=True),
    Index(
        "ux_inbox_sender_control",
        "sender",
        "control_id",
        unique=True,
        sqlite_where=text("accepted"),
        postgresql_where=text("accepted"),
    ),
    Index("ix_inbox_status", "status", "id"),
    Index("ix_inbox_received", "received_at"),
    # The stream workers' order check: a patient's earlier pending messages (migration 0014).
    Index(
        "ix_inbox_pending_patient",
        "patient_key",
        "id",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# What the hub must deliver (outbound HL7 v2 orders and results, notifications), kept until the
# destination acknowledged it.  Delivered in id order per destination.
outbox = Table(
    "outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # mllp://host:port, or Endpoint/<id>: resolved to its address at each attempt, so an
    # Endpoint the office changes through FHIR is followed without a restart.
    Column("destination", String(256), nullable=False),
    Column("control_id", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # pending → sent | failed (an application error, or out of attempts)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("sent_at", BigInteger, nullable=True),
    Column("ack", LargeBinary, nullable=True),
    # What the row is for (route-order, route-result; None for application ACKs) and the id of
    # that topic's row, so the outcome moves a routed order's status in the same transaction.
    Column("topic", String(32), nullable=True),
    Column("topic_id", BigInteger, nullable=True),
    Column("replays", Integer, nullable=False, server_default=text("0")),  # by the office
    Column("failed_at", BigInteger, nullable=True),  # a dead letter since
    Index("ix_outbox_due", "status", "destination", "id"),
)

# The high-water mark of each SQL middle-table feed: the last source key whose rows are in the
# inbox.  Moved in the same transaction as those inbox rows, so after a restart no row is read
# twice and none is skipped.
sql_watermarks = Table(
    "sql_watermarks",
    metadata,
    Column("feed_id", String(128), primary_key=True),
    Column("last_key", Text, nullable=False),  # JSON: the key value (number or text)
    Column("updated_at", BigInteger, nullable=False),
)

# --- the patient index (hub.services.identity) ------------------------------------------------
# One row per member Patient record: the person (master Patient) it belongs to, how it came to
# belong there, and the features it is matched on.  Written in the same transaction as the
# Patient itself, so the index and the records never disagree.
mpi_records = Table(
    "mpi_records",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("master_id", String(64), nullable=False),
    # key (shared exact key), score (probabilistic), manual (the office), self (alone)
    Column("method", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("replaced_by", String(64), nullable=True),  # merged into this record (ADT^A40)
    Column("name_key", String(128), nullable=True),
    Column("birth_date", String(10), nullable=True),
    Column("gender", String(16), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("features", Text, nullable=False),  # JSON, so candidates score without a re-read
    Column("digest", String(64), nullable=False),  # of what the master is built from
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_mpi_records_master", "master_id"),
    Index("ix_mpi_records_name", "name_key"),
    Index("ix_mpi_records_birth", "birth_date", "gender"),
    Index("ix_mpi_records_phone", "phone"),
)

# Exact keys (valid resident ID, e-health card, insurance card, passport) of each record.
mpi_keys = Table(
    "mpi_keys",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("value", String(128), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_mpi_keys_patient", "patient_id"),
)

# Pairs of records a person decided are different people (an unlink, a review): never
# linked automatically again.  Stored with a < b.
mpi_distinct = Table(
    "mpi_distinct",
    metadata,
    Column("a", String(64), primary_key=True),
    Column("b", String(64), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Suggested links waiting for the office: one review Task per (record, candidate person).
mpi_reviews = Table(
    "mpi_reviews",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("candidate_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("status", String(16), nullable=False),  # open, linked, distinct
    Column("created_at", BigInteger, nullable=False),
)

# Merges, with what they moved, so that a merge can be undone.
mpi_merges = Table(
    "mpi_merges",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),  # the retired record
    Column("target_id", String(64), nullable=False),  # the survivor
    Column("moved", Text, nullable=False),  # JSON [[type, id], ...] whose references moved
    Column("audit_event", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("undone_at", BigInteger, nullable=True),
    Index("ix_mpi_merges_source", "source_id"),
)

# --- mutual recognition (hub.services.recognition) --------------------------------------------
# Every item checked for a recognisable result (by $recognize, or after the fact for orders that
# arrive by feed) and what became of it: the office's figures are counted from here.
recognition_checks = Table(
    "recognition_checks",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("checked_at", BigInteger, nullable=False),
    Column("month", String(7), nullable=False),  # YYYY-MM in the community's time zone
    Column("orderer", String(64), nullable=False),  # member code, '' if unknown
    Column("patient_id", String(64), nullable=False),
    Column("person_id", String(64), nullable=False),  # master id (the record's own if none)
    Column("item", String(64), nullable=False),
    Column("recognisable", Boolean, nullable=False),
    Column("price", Float, nullable=False),
    # none (nothing to recognise), pending, accepted, reordered
    Column("decision", String(16), nullable=False),
    Column("repeat_reason", String(32), nullable=True),
    Column("issue_id", String(64), nullable=True),  # the DetectedIssue recording it
    Column("request_id", String(64), nullable=True),  # the ServiceRequest ordered anyway
    Column("source", String(16), nullable=False),  # operation | order
    Column("emergency", Boolean, nullable=False),
    Index("ix_recognition_month", "month", "orderer"),
    Index("ix_recognition_person", "person_id", "item", "checked_at"),
    Index("ix_recognition_issue", "issue_id"),
)

# --- monthly inpatient feedback (hub.services.feedback) ---------------------------------------
# One row per inpatient stay the feedback has seen: where its document went and a digest of
# what the document says, so a rerun with unchanged data writes nothing.
feedback_documents = Table(
    "feedback_documents",
    metadata,
    Column("encounter_id", String(64), primary_key=True),
    Column("month", String(7), nullable=False),  # YYYY-MM of the discharge, community time
    Column("patient_id", String(64), nullable=False),
    Column("addressee", String(64), nullable=True),  # Organization id; NULL: none found
    Column("addressed_by", String(32), nullable=False),  # general-practitioner, ... , none
    Column("composition_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),  # 1 = final; > 1 = amended
    Column("digest", String(64), nullable=False),
    Column("discharged_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_feedback_month", "month", "addressee"),
)

# Every feedback run, whoever started it, with what it did.
feedback_runs = Table(
    "feedback_runs",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("month", String(7), nullable=False),
    Column("org", String(64), nullable=True),
    Column("trigger", String(16), nullable=False),  # schedule | cli | admin
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # running | completed | failed
    Column("summary", Text, nullable=True),  # JSON counts
)

# Leases that keep a scheduled job to one runner across processes and hosts, and remember the
# last period each job finished (so a start after a missed run catches up).
scheduler_leases = Table(
    "scheduler_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=True),
    Column("until", BigInteger, nullable=False),
    Column("last_done", String(32), nullable=True),
)

# --- FHIR Bulk Data export (hub.services.export) ----------------------------------------------
export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # system | group | patient
    Column("group_id", String(64), nullable=True),
    Column("types", Text, nullable=True),  # JSON list; NULL = every type the kind allows
    Column("since", BigInteger, nullable=True),
    Column("request", Text, nullable=False),  # the kick-off URL, for the manifest
    Column("requested_by", String(64), nullable=True),  # the client; NULL: the hub itself
    # accepted → in-progress → completed | failed; a cancelled job's row is deleted.
    Column("status", String(16), nullable=False),
    Column("progress", String(128), nullable=True),
    Column("error", Text, nullable=True),  # OperationOutcome JSON when failed
    Column("created_at", BigInteger, nullable=False),
    Column("transaction_time", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    # Runs started; a job whose runner keeps dying is failed instead of restarted forever.
    Column("attempts", Integer, nullable=False, default=0),
    Index("ix_export_jobs_status", "status"),
)

export_files = Table(
    "export_files",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),  # NDJSON
    # An error file (OperationOutcome lines) for the manifest's ``error`` list.
    Column("is_error", Boolean, nullable=False, default=False),
    Index("ix_export_files_job", "job_id", "res_type", "seq"),
)

# The patients a Group export covers, fixed when the job starts (its transaction time), so
# the export's queries join a table instead of carrying thousands of ids as parameters.
export_members = Table(
    "export_members",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
)

# --- Subscriptions (hub.services.subscriptions) -----------------------------------------------
# The durable outbox of rest-hook notifications: one row per (Subscription, matching write).
subscription_notifications = Table(
    "subscription_notifications",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending → sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("sent_at", BigInteger, nullable=True),
    Index("ix_subscription_due", "status", "subscription_id", "id"),
)

# --- Two-way referral (hub.services.referral) -------------------------------------------------
# One row per referral ServiceRequest: who sent it where, its Task and the Task's state, so
# the admission of a referred patient finds the open referral in one indexed query.
referrals = Table(
    "referrals",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("task_id", String(64), nullable=False, unique=True),
    Column("direction", String(16), nullable=False),  # up | down (profiles/referral)
    Column("requester", String(64), nullable=False),  # referring member's Organization id
    Column("performer", String(64), nullable=False),  # receiving member's Organization id
    Column("patient_id", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("green", Boolean, nullable=False),  # 绿色通道
    Column("status", String(32), nullable=False),  # the Task's status
    Column("requested_at", BigInteger, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),  # when the last step happened
    Column("encounter_id", String(64), nullable=True),  # the admission it led to
    Index("ix_referrals_open", "performer", "status"),
    Index("ix_referrals_encounter", "encounter_id"),
    Index("ix_referrals_requested", "requested_at"),
)

# Every step of every referral (the initial state included), for the office's figures.
referral_events = Table(
    "referral_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("at", BigInteger, nullable=False),  # when it happened
    Column("recorded_at", BigInteger, nullable=False),  # when the hub learnt of it
    Index("ix_referral_events_at", "at", "status"),
    Index("ix_referral_events_request", "request_id"),
)

# --- order routing (hub.services.routing) -----------------------------------------------------
# One row per ServiceRequest routed to a regional centre: where it went, how, and when each step
# of sent → accepted → resulted → delivered (or failed, cancelled) happened.  The routing Task
# (``task_id``) shows the same status through FHIR; this table is what the office's list and the
# monthly figures count.
routed_orders = Table(
    "routed_orders",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("task_id", String(64), nullable=False),
    Column("orderer", String(64), nullable=False),  # member codes
    Column("destination", String(64), nullable=False),
    Column("endpoint", String(128), nullable=True),  # Endpoint/<id> the order went to
    Column("channel", String(16), nullable=False),  # hl7v2 | fhir
    Column("message", String(16), nullable=True),  # OML^O21, ORM^O01
    Column("kind", String(16), nullable=True),  # lab | imaging | ecg
    Column("item", String(64), nullable=True),
    Column("month", String(7), nullable=False),  # of ordering, in the community's zone
    Column("ordered_at", BigInteger, nullable=False),
    Column("routed_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("accepted_at", BigInteger, nullable=True),
    Column("resulted_at", BigInteger, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Column("failed_at", BigInteger, nullable=True),
    Column("cancelled_at", BigInteger, nullable=True),
    Column("report_id", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_routed_month", "month", "orderer"),
    Index("ix_routed_status", "status", "destination"),
    Index("ix_routed_report", "report_id"),
)

# --- security (hub.security) ------------------------------------------------------------------
# The clients that may call the hub: each a member system (or the office, or the local admin)
# with the scopes it may be granted and how it authenticates (a JWKS for private_key_jwt, or a
# scrypt hash of a client secret).
auth_clients = Table(
    "auth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("org", String(64), nullable=True),  # member code; NULL for the office and admin
    Column("roles", Text, nullable=False),  # JSON list: admin, office, member, archive
    # A health-archive system: the centres whose documents it may read (JSON list).
    Column("serves", Text, nullable=True),
    Column("scopes", Text, nullable=False),  # the most it may ask for
    Column("secret_hash", Text, nullable=True),
    Column("jwks", Text, nullable=True),  # JSON Web Key Set (public keys)
    Column("created_at", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

# The hub's keys for signing access tokens (one current; older ones kept to verify tokens
# issued before a rotation until they expire).
auth_keys = Table(
    "auth_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
)

# Client assertion ids seen (private_key_jwt replay protection), kept until they expire.
auth_assertions = Table(
    "auth_assertions",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_auth_assertions_expiry", "expires_at"),
)
