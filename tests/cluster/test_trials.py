"""The trials of the multi-host rig (issue 10), each on a fresh cluster: N photos uploaded
through the signed form straight to Cloudinary, their notifications through both web hosts,
the work on three worker hosts, and one fault staged mid-burst as it comes in production."""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import cloudinary.uploader
import requests
from sqlalchemy.orm import Session

from cloudinary_emulator.signing import notification_signature

from common.models import Album, Organization
from tests.cluster.client import WebPool, tiny_jpeg, upload_burst
from tests.cluster.rig import (ADDRESSES, WEB_HOSTS, WORKER_HOSTS, Cluster, TaskRun, per_host, public_ids,
                               ready_counts)
from tests.e2e.stack import wait_for

#: Photos per trial (the issue asks for at least 300; CLUSTER_PHOTOS overrides for a quick look).
N = int(os.environ.get("CLUSTER_PHOTOS", "300"))


def photos(tmp: Path, n: int, first: int = 0) -> list[Path]:
    """``n`` photos of distinct bytes, seeds ``first`` on (the same bytes twice in one album are
    one photo: the second is dropped on arrival, DROP_SAME_BYTES)."""
    paths = []
    for i in range(first, first + n):
        path = tmp / f"photo-{i}.jpg"
        path.write_bytes(tiny_jpeg(i))
        paths.append(path)
    return paths


def new_album(cluster: Cluster, album_id: str) -> str:
    with Session(cluster.engine) as session, session.begin():
        org = Organization(name="cluster")
        session.add(org)
        session.flush()
        session.add(Album(id=album_id, organization_id=org.id))
    return album_id


def every_photo_ready_once(cluster: Cluster, pool: WebPool, album: str, uploaded: list[str], timeout: float) -> float:
    """Wait until the database has each uploaded photo exactly once, all ready, and the album's
    count is exact; check it through the API too. Returns the seconds waited."""
    started = time.monotonic()
    n = len(uploaded)

    def settled() -> bool:
        counts = ready_counts(cluster, album)
        return counts["ready"] == n and sum(counts.values()) == n

    try:
        wait_for(settled, timeout, interval=1.0, what=f"{n} photos ready")
    except AssertionError:
        raise AssertionError(f"not every photo ready: {dict(ready_counts(cluster, album))} of {n}") from None
    rows = public_ids(cluster, album)
    assert len(rows) == n and sorted(rows) == sorted(uploaded), "each uploaded photo once, no other"
    wait_for(lambda: pool.album(album)["images_count"] == n, 60, what="the exact images_count")
    images = pool.images(album)
    assert sorted(i["public_id"] for i in images) == sorted(uploaded)
    assert Counter(i["status"] for i in images) == {"ready": n}
    return time.monotonic() - started


def share(counter: Counter[str], key: str) -> float:
    total = sum(counter.values())
    return counter[key] / total if total else 0.0


def test_happy_path_spreads_over_every_host(make_cluster: Callable[..., Cluster], web: Callable[[Cluster], WebPool],
                                            record: Callable[[str, str], None], tmp_path: Path) -> None:
    cluster = make_cluster()
    pool = web(cluster)
    album = new_album(cluster, "CLUSTERHAPPY")
    form = pool.upload_done(album)["upload_form"]
    burst = upload_burst(form, photos(tmp_path, N))
    waited = every_photo_ready_once(cluster, pool, album, burst.public_ids, timeout=300)

    runs = cluster.task_runs()
    tasks = per_host(runs)
    webhooks = cluster.webhooks_per_web_host()
    record("1 happy path", f"rig up in {cluster.start_seconds:.0f} s; {N} photos uploaded in {burst.seconds:.0f} s, "
                           f"all ready {waited:.0f} s after the last upload")
    record("1 happy path", f"tasks per worker host: {dict(tasks)}; webhooks per web host: {dict(webhooks)}; "
                           f"API calls per web host: {dict(pool.served)}")
    # Visibly spread: every worker host ran a fair share of the work, both web hosts took webhooks.
    for host in WORKER_HOSTS:
        assert share(tasks, host) >= 0.15, (host, tasks)
    assert sum(webhooks.values()) >= N
    assert min(webhooks.values()) >= 0.2 * N, webhooks


def test_a_worker_host_cut_off_mid_burst_loses_nothing(make_cluster: Callable[..., Cluster],
                                                       web: Callable[[Cluster], WebPool],
                                                       record: Callable[[str, str], None], tmp_path: Path) -> None:
    cluster = make_cluster()
    pool = web(cluster)
    # Cloudinary answers in 150 ms: the io workers have calls in flight when the cable goes.
    cluster.emulator("POST", "/_emulator/faults", json={"latency_ms": 150})
    album = new_album(cluster, "CLUSTERWORKERCUT")
    form = pool.upload_done(album)["upload_form"]
    victim = "worker-3"
    cut_at = 0.0

    def cut() -> None:
        nonlocal cut_at
        cluster.net.cut(victim)
        cut_at = time.time()

    burst = upload_burst(form, photos(tmp_path, N), fault_after=N // 3, fault=cut)
    # No upload_done after the burst: what the cut host held must come back through the broker.
    waited = every_photo_ready_once(cluster, pool, album, burst.public_ids, timeout=300)

    # The messages the cut host held come back once their visibility timeout runs out, whether
    # or not the heal task re-sent those stages meanwhile (then they run again, harmlessly).
    def redelivered() -> tuple[set[str], dict[str, TaskRun], list[TaskRun]] | None:
        runs = cluster.task_runs()
        received = {r.task_id: r for r in runs if r.host == victim and r.event == "received"}
        finished = {r.task_id for r in runs if r.host == victim and r.event == "succeeded" and r.ts < cut_at}
        stranded = set(received) - finished
        elsewhere = {r.task_id: r for r in runs if r.host != victim and r.event == "received" and r.ts >= cut_at}
        done = {r.task_id for r in runs if r.host != victim and r.event == "succeeded"}
        if stranded and stranded <= set(elsewhere) and stranded <= done:
            return stranded, elsewhere, runs
        return None

    stranded, elsewhere, runs = wait_for(redelivered, cluster.visibility_timeout + 60,
                                         what="the cut host's reserved tasks to run on other hosts")
    on_victim = {r.task_id: r for r in runs if r.host == victim and r.event == "received"}
    assert sorted(public_ids(cluster, album)) == sorted(burst.public_ids)  # the second runs added nothing
    assert ready_counts(cluster, album) == {"ready": N}
    back_after = sorted(elsewhere[t].ts - cut_at for t in stranded)
    tasks = per_host(runs)
    record("2 worker host cut", f"{victim} cut after {N // 3} of {N} uploads; {len(stranded)} tasks it had reserved "
                                f"({dict(Counter(on_victim[t].name for t in stranded))}) came back on other hosts "
                                f"{back_after[0]:.0f}-{back_after[-1]:.0f} s after the cut "
                                f"(visibility timeout {cluster.visibility_timeout} s)")
    record("2 worker host cut", f"all {N} ready once, {waited:.0f} s after the last upload; "
                                f"tasks per worker host: {dict(tasks)}; stages the beat's heal re-sent: "
                                f"{cluster.healed()}; workers restarted: {cluster.restarts()}")
    # A message reserved before the cut comes back once its visibility timeout ran out, plus at
    # most one restore interval and the time to run it.
    assert back_after[-1] <= cluster.visibility_timeout + 30, back_after


def test_a_web_host_cut_off_mid_burst_loses_nothing(make_cluster: Callable[..., Cluster],
                                                    web: Callable[[Cluster], WebPool],
                                                    record: Callable[[str, str], None], tmp_path: Path) -> None:
    cluster = make_cluster()
    pool = web(cluster)
    album = new_album(cluster, "CLUSTERWEBCUT")
    form = pool.upload_done(album)["upload_form"]
    victim, survivor = "web-2", "web-1"
    victim_url = cluster.web_urls[1]
    before_cut: Counter[str] = Counter()

    def cut() -> None:
        before_cut.update(cluster.webhooks_per_web_host())
        cluster.net.cut(victim)

    burst = upload_burst(form, photos(tmp_path, N), fault_after=N // 3, fault=cut)
    # The client keeps using both hosts (round-robin) while it waits: calls to the cut one
    # time out and go to the other. No upload_done: the webhooks alone must bring every photo.
    waited = every_photo_ready_once(cluster, pool, album, burst.public_ids, timeout=300)
    stats = cluster.emulator("GET", "/_emulator/stats")["notifications"]
    webhooks = cluster.webhooks_per_web_host()
    record("3 web host cut", f"{victim} cut after {N // 3} of {N} uploads; webhooks answered before the cut "
                             f"{dict(before_cut)}, in all {dict(webhooks)}; notifications {stats}")
    record("3 web host cut", f"all {N} ready once, {waited:.0f} s after the last upload; client calls moved off "
                             f"the cut host: {pool.failed_over[victim_url]}, served per host {dict(pool.served)}")
    assert before_cut[victim] > 0, "the cut host took no webhook before it went: the trial proved nothing"
    assert webhooks[survivor] - before_cut[survivor] > 0
    assert stats.get("failed", 0) == 0, stats  # no notification given up: the balancer moved them
    assert pool.failed_over[victim_url] > 0  # the client did meet the cut host, and went round it


class FailoverClock:
    """Staged in a thread at the kill: when the Sentinels named a new master, and when a webhook
    was acknowledged again (its publish reached a master). The probe re-sends, signed as
    Cloudinary signs it, the notification of one photo uploaded before the burst: a duplicate,
    which the pipeline must absorb anyway."""

    def __init__(self, cluster: Cluster, form: dict, probe_photo: Path) -> None:
        self.cluster = cluster
        self.killed_at = self.promoted_at = self.webhook_back_at = 0.0
        self.old_master = cluster.master_address()
        self.new_master: tuple[str, int] | None = None
        self.webhooks_before: Counter[str] = Counter()
        self.notification_url = form["params"]["notification_url"]
        self.resource = cloudinary.uploader.call_api("upload", dict(form["params"]), unsigned=True,
                                                     file=str(probe_photo), resource_type="auto")
        self.probe_statuses: Counter[int] = Counter()

    def kill_master(self) -> None:
        self.cluster.net.kill("data", "redis")  # SIGKILL: no shutdown, no last save
        self.killed_at = time.monotonic()
        self.webhooks_before = self.cluster.webhooks_per_web_host()
        threading.Thread(target=self._watch, daemon=True).start()

    def _webhook(self) -> int:
        body = json.dumps({**self.resource, "notification_type": "upload"})
        timestamp = int(time.time())
        signature = notification_signature(body, timestamp, self.cluster.secrets["cloudinary"], "sha1")
        try:
            return requests.post(self.notification_url, data=body.encode(), timeout=2, headers={
                "Content-Type": "application/json", "X-Cld-Timestamp": str(timestamp), "X-Cld-Signature": signature,
            }).status_code
        except requests.RequestException:
            return 0

    def _watch(self) -> None:
        deadline = self.killed_at + 120
        while time.monotonic() < deadline and not (self.promoted_at and self.webhook_back_at):
            if not self.promoted_at:
                found = self.cluster.master_address()
                if found and found != self.old_master:
                    self.new_master, self.promoted_at = found, time.monotonic()
            if not self.webhook_back_at:
                status = self._webhook()
                self.probe_statuses[status] += 1
                if status == 200:
                    self.webhook_back_at = time.monotonic()
            time.sleep(0.1)


def test_the_broker_fails_over_and_every_photo_is_ready_once(make_cluster: Callable[..., Cluster],
                                                             web: Callable[[Cluster], WebPool],
                                                             record: Callable[[str, str], None], tmp_path: Path) -> None:
    cluster = make_cluster(sentinel=True)
    pool = web(cluster)
    album = new_album(cluster, "CLUSTERFAILOVER")
    form = pool.upload_done(album)["upload_form"]
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    clock = FailoverClock(cluster, form, photos(probe_dir, 1, first=N)[0])  # not one of the burst's
    assert clock.old_master == (ADDRESSES["data"], 6379)

    burst = upload_burst(form, photos(tmp_path, N), fault_after=N // 3, fault=clock.kill_master)
    wait_for(lambda: clock.promoted_at and clock.webhook_back_at, 120, what="the promotion and a webhook acknowledged")
    assert clock.new_master == (ADDRESSES["redis-2"], 6379)
    # The client says upload_done (retried through any 503): its reconcile lists the album on
    # Cloudinary and brings in what the failover lost.
    pool.upload_done(album)
    waited = every_photo_ready_once(cluster, pool, album, [clock.resource["public_id"], *burst.public_ids], timeout=300)

    # Web and workers follow the promoted master: every worker process ran tasks after the kill.
    kill_wall = time.time() - (time.monotonic() - clock.killed_at)
    after = Counter(f"{r.host}/{r.worker}" for r in cluster.task_runs() if r.ts > kill_wall and r.event == "succeeded")
    for host in WORKER_HOSTS:
        for kind in ("fast", "io"):
            assert after[f"{host}/{kind}"] > 0, after
    webhooks_after = cluster.webhooks_per_web_host() - clock.webhooks_before
    assert all(webhooks_after[host] > 0 for host in WEB_HOSTS), webhooks_after  # both web hosts publish again
    statuses = cluster.web_statuses()
    assert statuses.get("500", 0) == 0, statuses  # a lost broker is a 503, never a 500
    # The coordination keys live on the promoted master now: the heal task saw the new Redis
    # (its run_id) and recorded it there.
    promoted = cluster.redis_at("redis-2")
    assert promoted.info("replication")["role"] == "master"
    assert promoted.get("album:broker_run_id").decode() == promoted.info("server")["run_id"]
    stats = cluster.emulator("GET", "/_emulator/stats")["notifications"]
    record("4 broker failover", f"master SIGKILLed after {N // 3} of {N} uploads; Sentinels promoted redis-2 "
                                f"{clock.promoted_at - clock.killed_at:.1f} s later; a webhook was acknowledged "
                                f"again {clock.webhook_back_at - clock.killed_at:.1f} s after the kill "
                                f"(probe answers meanwhile: {dict(clock.probe_statuses)})")
    record("4 broker failover", f"all {N} ready once, {waited:.0f} s after upload_done; web answers {statuses}; "
                                f"notifications {stats}; webhooks per web host after the kill {dict(webhooks_after)}; "
                                f"tasks per worker after the kill {dict(after)}; "
                                f"stages the heal re-sent: {cluster.healed()}; workers restarted by their "
                                f"supervisor: {cluster.restarts()}")


#: How long the data host's cable stays out: longer than the database client's TCP timeouts
#: (common/db.py) and the emulator's notification retries, so both are exercised.
DATA_CUT = 45.0
#: The bar: every photo ready and counted within this long of the cable going back.
DATA_BACK_WITHIN = 60.0


def test_the_data_host_cut_off_for_a_while_loses_nothing(make_cluster: Callable[..., Cluster],
                                                         web: Callable[[Cluster], WebPool],
                                                         record: Callable[[str, str], None], tmp_path: Path) -> None:
    """PostgreSQL and Redis both unreachable (the data host's cable pulled mid-burst, plugged
    back DATA_CUT seconds later): no FIN, no RST, connections just go silent. Webhooks answer
    503 meanwhile (Cloudinary retries them, and gives some up: the client's upload_done brings
    those back), the workers' queries and broker connections time out and are retried. Every
    photo is ready once, and counted, soon after the cable is back."""
    cluster = make_cluster()
    pool = web(cluster)
    album = new_album(cluster, "CLUSTERDATACUT")
    form = pool.upload_done(album)["upload_form"]
    back_at = 0.0

    def cut_for_a_while() -> None:
        nonlocal back_at
        cluster.net.cut("data")
        time.sleep(DATA_CUT)
        cluster.net.restore("data")
        back_at = time.monotonic()

    burst = upload_burst(form, photos(tmp_path, N), fault_after=N // 3, fault=cut_for_a_while)
    pool.upload_done(album)  # as every client does once its batch is sent
    every_photo_ready_once(cluster, pool, album, burst.public_ids, timeout=DATA_BACK_WITHIN + 120)
    ready_after = time.monotonic() - back_at
    statuses = cluster.web_statuses()
    stats = cluster.emulator("GET", "/_emulator/stats")["notifications"]
    record("5 data host cut", f"data (PostgreSQL + Redis) cut after {N // 3} of {N} uploads for {DATA_CUT:.0f} s; "
                              f"all {N} ready once and counted {ready_after:.0f} s after it was back; web answers "
                              f"{statuses}; notifications {stats}; stages the heal re-sent: {cluster.healed()}; "
                              f"workers restarted by their supervisor: {cluster.restarts()}")
    assert statuses.get("500", 0) == 0, statuses  # an unreachable broker or database is a 503, never a 500
    assert ready_after <= DATA_BACK_WITHIN, ready_after
