"""What both benchmarks need: a throw-away PostgreSQL, a running hub, realistic resources."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# (code, display, unit, low, high) of common county lab items.
LAB_ITEMS = [
    ("718-7", "血红蛋白", "g/L", 115, 175),
    ("6690-2", "白细胞计数", "10*9/L", 3.5, 9.5),
    ("777-3", "血小板计数", "10*9/L", 125, 350),
    ("789-8", "红细胞计数", "10*12/L", 4.3, 5.8),
    ("2339-0", "葡萄糖", "mmol/L", 3.9, 6.1),
    ("2093-3", "总胆固醇", "mmol/L", 2.8, 5.2),
    ("2571-8", "甘油三酯", "mmol/L", 0.45, 1.7),
    ("2160-0", "肌酐", "umol/L", 57, 111),
    ("1742-6", "丙氨酸氨基转移酶", "U/L", 9, 50),
]
PANELS = [("58410-2", "血常规"), ("57698-3", "血脂四项"), ("24323-8", "肝肾功能")]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"


def free_port(start: int = 0) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", start))
        return int(sock.getsockname()[1])


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not found:
        sys.exit("PostgreSQL is not installed (bash tests/run.sh installs it)")
    return found[-1]


@contextlib.contextmanager
def postgres(settings: dict[str, str] | None = None) -> Iterator[str]:
    """A throw-away PostgreSQL cluster with production durability (fsync on)."""
    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    work.chmod(0o755)
    data = work / "data"
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    port = free_port()
    subprocess.run(
        [
            *as_pg,
            str(pg_bin() / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = {
        "listen_addresses": "127.0.0.1",
        "max_connections": "100",
        "shared_buffers": "1GB",
        "work_mem": "32MB",
        **(settings or {}),
    }
    opts = f"-p {port} -k {work} " + " ".join(f"-c {k}={v}" for k, v in options.items())
    subprocess.run(
        [
            *as_pg,
            str(pg_bin() / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(work / "log"),
            "-w",
            "start",
            "-o",
            opts,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def redis_server(url: str | None, enabled: bool) -> Iterator[str | None]:
    """The given Redis, none, or a throw-away redis-server (no persistence: the store is the
    record)."""
    if not enabled or url:
        yield url if enabled else None
        return
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-redis-"))
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def hub_server(db_url: str, workers: int = 2) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HUB_DB_URL": db_url, "HUB_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            httpx.get(f"{base}/fhir/metadata", timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                # Not left behind (with its workers) still working on the benchmark's database.
                os.killpg(proc.pid, signal.SIGKILL)
                sys.exit("hub serve did not start")
            time.sleep(0.3)
    minted = subprocess.run(
        [sys.executable, "-m", "hub.cli", "token", "--admin", "--db", db_url],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    # Security is on in the benchmarks too: what they measure includes checking the token.
    TOKENS[base] = minted.stdout.strip().splitlines()[-1]
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


TOKENS: dict[str, str] = {}


def auth(base: str) -> dict[str, str]:
    """The administrator's bearer header for a hub started by ``hub_server``."""
    return {"Authorization": f"Bearer {TOKENS[base]}"}


def resident_id(rng: random.Random) -> str:
    """A valid 18-character resident ID (GB 11643 MOD 11-2 check digit)."""
    region = rng.choice(["330521", "330522", "330523"])
    birth = f"{rng.randint(1940, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = region + birth + f"{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def patient(rng: random.Random, n: int) -> dict[str, Any]:
    rid = resident_id(rng)
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.156.XRMYY.mrn", "value": f"ZY{n:08d}"},
            {"system": "https://ygt.example.org/fhir/sid/resident-id", "value": rid},
        ],
        "name": [
            {
                "text": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                "family": rng.choice(SURNAMES),
            }
        ],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{rid[6:10]}-{rid[10:12]}-{rid[12:14]}",
    }


def observation(
    rng: random.Random, patient_ref: str, when: str, item: tuple[Any, ...] | None = None
) -> dict[str, Any]:
    code, display, unit, low, high = item or rng.choice(LAB_ITEMS)
    value = round(rng.uniform(low * 0.7, high * 1.3), 2)
    flag = "L" if value < low else "H" if value > high else "N"
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "issued": when,
        "performer": [{"reference": "Organization/XJYZX"}],
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": flag,
                    }
                ]
            }
        ],
        "referenceRange": [
            {
                "low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                "high": {"value": high, "unit": unit, "system": UCUM, "code": unit},
            }
        ],
    }


def report(
    patient_ref: str, when: str, panel: tuple[str, str], results: list[str]
) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": panel[0], "display": panel[1]}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": when,
        "issued": when,
        "performer": [{"reference": "Organization/XJYZX"}],
        "result": [{"reference": r} for r in results],
    }


def random_time(rng: random.Random) -> str:
    return (
        f"{rng.choice([2025, 2026])}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(7, 18):02d}:{rng.randint(0, 59):02d}:00+08:00"
    )


def lab_bundle(rng: random.Random, reports: int = 10, per_report: int = 9) -> dict[str, Any]:
    """A transaction: ``reports`` DiagnosticReports, each with ``per_report`` Observations."""
    entries = []
    for _ in range(reports):
        pref = f"Patient/p{rng.randint(1, 1000)}"
        when = random_time(rng)
        urls = []
        for _ in range(per_report):
            url = f"urn:uuid:{uuid.uuid4()}"
            urls.append(url)
            entries.append(
                {
                    "fullUrl": url,
                    "resource": observation(rng, pref, when),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": report(pref, when, rng.choice(PANELS), urls),
                "request": {"method": "POST", "url": "DiagnosticReport"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def copy_as_stored(conn: Any, rows: list[Any]) -> float:
    """COPY stored resource rows (rid, type, id, version, lastUpdated, deleted, content) into
    plain look-alikes of ``resources`` and ``resource_history``; the seconds it took.

    The raw-COPY baseline the benchmarks print their ratios against.
    """
    conn.execute("DROP TABLE IF EXISTS copy_resources, copy_history")
    conn.execute("CREATE TABLE copy_resources (LIKE resources)")
    conn.execute("CREATE TABLE copy_history (LIKE resource_history)")
    conn.commit()
    start = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(
            "COPY copy_resources (rid, res_type, res_id, version_id, last_updated, deleted,"
            " content) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        with cur.copy(
            "COPY copy_history (rid, version_id, res_type, res_id, last_updated, deleted,"
            " method, content) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row((r[0], r[3], r[1], r[2], r[4], r[5], "POST", r[6]))
    conn.commit()
    elapsed = time.perf_counter() - start
    conn.execute("DROP TABLE copy_resources, copy_history")
    conn.commit()
    return elapsed
