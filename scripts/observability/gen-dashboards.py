#!/usr/bin/env python3
"""Writes Herald's Grafana dashboards (charts/herald/dashboards/*.json): overview, engine, nodes.
Every query selects namespace="$namespace", pod=~"$pod". `--check` exits 1 when a committed
dashboard differs from what this script writes; edit here and run `make dashboards`."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "charts" / "herald" / "dashboards"
F = 'namespace="$namespace", pod=~"$pod"'
NOT_OK = 'result!="ok"'
DS = {"type": "prometheus", "uid": "${datasource}"}


def sel(metric, extra=""):
    return f"{metric}{{{F}{', ' + extra if extra else ''}}}"


def rate(metric, extra=""):
    return f"rate({sel(metric, extra)}[$__rate_interval])"


def quantile(q, metric, by=""):
    keys = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) ({rate(metric + '_bucket')}))"


def variables():
    def query(name, q, multi):
        v = {"name": name, "label": name, "type": "query", "datasource": DS,
             "query": {"query": q, "refId": name}, "definition": q, "refresh": 2, "sort": 1,
             "multi": multi, "includeAll": multi, "current": {}}
        if multi:
            v["allValue"] = ".*"
        return v
    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        query("namespace", "label_values(herald_build_info, namespace)", False),
        query("pod", 'label_values(herald_build_info{namespace="$namespace"}, pod)', True),
    ]}


class Board:
    """Panels laid out left to right, rows of 24 grid units."""

    def __init__(self):
        self.panels, self.x, self.y, self.row_h = [], 0, 0, 0

    def add(self, kind, title, targets, w=12, h=8, unit="short", description="", **extra):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
                 "datasource": DS, "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
                 "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                 "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr,
                              "legendFormat": legend, **({"instant": True, "format": "table"}
                                                         if kind == "table" else {})}
                             for i, (expr, legend) in enumerate(targets)]}
        if kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "graphMode": "area"}
        elif kind == "timeseries":
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                                "tooltip": {"mode": "multi", "sort": "desc"}}
        panel.update(extra)
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def ts(self, title, targets, **kw):
        self.add("timeseries", title, targets, **kw)

    def stat(self, title, expr, **kw):
        self.add("stat", title, [(expr, "")], w=kw.pop("w", 6), h=kw.pop("h", 4), **kw)


def dashboard(uid, title, description, board):
    return {"title": title, "uid": uid, "description": description, "tags": ["herald"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
            "graphTooltip": 1, "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
            "annotations": {"list": []}, "templating": variables(), "panels": board.panels}


def overview():
    b = Board()
    b.stat("Connections", f"sum({sel('herald_connections')})")
    b.stat("Subscriptions", f"sum({sel('herald_subscriptions')})")
    b.stat("Publications/s", f"sum({rate('herald_publications_total')})", unit="reqps")
    b.stat("Deliveries/s", f"sum({rate('herald_deliveries_total')})", unit="ops")
    b.ts("Connections by transport", [(f"sum by (transport) ({sel('herald_connections')})", "{{transport}}")])
    b.ts("Connects/s by transport", [(f"sum by (transport) ({rate('herald_connects_total')})", "{{transport}}")],
         unit="ops", description="Connections that completed connect (authenticated).")
    b.ts("Publications/s by source", [(f"sum by (source) ({rate('herald_publications_total')})", "{{source}}")],
         unit="reqps")
    b.ts("Deliveries/s by transport", [(f"sum by (transport) ({rate('herald_deliveries_total')})", "{{transport}}")],
         unit="ops", description="Publication frames written to client sockets.")
    b.ts("Publish to write latency", [(quantile(0.5, "herald_publish_to_write_seconds"), "p50"),
                                      (quantile(0.99, "herald_publish_to_write_seconds"), "p99")],
         unit="s", description="From the publication's time to the write of its frame to the client socket.")
    b.ts("Pushes per write", [(quantile(0.5, "herald_pushes_per_write"), "p50"),
                              (f"sum({rate('herald_frames_written_total')}) / sum({rate('herald_writes_total')})",
                               "average")],
         description="Frames coalesced into one socket write (writev).")
    b.ts("Errors/s: server API and client commands",
         [(f"sum by (method, result) ({rate('herald_api_requests_total', NOT_OK)})", "api {{method}} {{result}}"),
          (f"sum by (method, result) ({rate('herald_client_commands_total', NOT_OK)})",
           "client {{method}} {{result}}")],
         unit="reqps", description="result is the protocol error code (100 internal, 102 unknown channel, 107 bad request, ...).")
    b.ts("Slow-client cut-offs/s (3008)",
         [(f"sum by (transport) ({rate('herald_slow_client_cutoffs_total')})", "{{transport}}")], unit="ops")
    b.add("bargauge", "Top disconnect codes (dashboard range)",
          [(f"topk(10, sum by (code) (increase({sel('herald_disconnects_total')}[$__range])) > 0)", "{{code}}")],
          options={"orientation": "horizontal", "displayMode": "basic",
                   "reduceOptions": {"calcs": ["lastNotNull"]}})
    b.ts("Latency p99: server API and client commands",
         [(quantile(0.99, "herald_api_request_duration_seconds", "method"), "api {{method}}"),
          (quantile(0.99, "herald_client_command_duration_seconds", "method"), "client {{method}}")], unit="s")
    return dashboard("herald-overview", "Herald overview",
                     "Herald: connections, publications, deliveries, latency and errors.", b)


def engine():
    b = Board()
    b.stat("Engine up (min over pods)", f"min({sel('herald_engine_up')})",
           description="1 when the engine (Redis) is usable.")
    b.stat("Nodes seen (min over pods)", f"min({sel('herald_nodes')})")
    b.stat("Engine errors/s", f"sum({rate('herald_engine_errors_total')})", unit="ops")
    b.stat("Pub/sub reconnects (dashboard range)",
           f"sum(increase({sel('herald_redis_pubsub_reconnects_total')}[$__range]))")
    b.ts("Redis command latency p50 by op", [(quantile(0.5, "herald_redis_command_duration_seconds", "op"), "{{op}}")],
         unit="s")
    b.ts("Redis command latency p99 by op", [(quantile(0.99, "herald_redis_command_duration_seconds", "op"), "{{op}}")],
         unit="s")
    b.ts("Redis errors/s by kind", [(f"sum by (kind) ({rate('herald_redis_errors_total')})", "{{kind}}")], unit="ops")
    b.ts("Pub/sub reconnects and lagged receivers/s",
         [(f"sum by (pod) ({rate('herald_redis_pubsub_reconnects_total')})", "reconnects {{pod}}"),
          (f"sum by (pod) ({rate('herald_redis_pubsub_lagged_total')})", "lagged {{pod}}")], unit="ops")
    b.ts("Gap checks/s by outcome", [(f"sum by (outcome) ({rate('herald_redis_gap_checks_total')})", "{{outcome}}")],
         unit="ops", description="Gaps in the pub/sub stream: filled from history, or unrecoverable (clients resync).")
    b.ts("Resyncs/s (3010)", [(f"sum by (pod) ({rate('herald_redis_resyncs_total')})", "{{pod}}")], unit="ops")
    b.ts("Redis probe round trip", [(quantile(0.5, "herald_redis_probe_rtt_seconds"), "p50"),
                                    (quantile(0.99, "herald_redis_probe_rtt_seconds"), "p99")], unit="s")
    b.ts("Engine up by pod", [(f"max by (pod) ({sel('herald_engine_up')})", "{{pod}}")])
    b.ts("Nodes seen by pod", [(f"max by (pod) ({sel('herald_nodes')})", "{{pod}}")])
    b.ts("Recoveries/s by outcome and source",
         [(f"sum by (outcome, from) ({rate('herald_recoveries_total')})", "{{outcome}} from {{from}}")], unit="ops")
    b.ts("Engine errors/s by pod", [(f"sum by (pod) ({rate('herald_engine_errors_total')})", "{{pod}}")], unit="ops")
    b.ts("Engine publish latency", [(quantile(0.5, "herald_publish_duration_seconds"), "p50"),
                                    (quantile(0.99, "herald_publish_duration_seconds"), "p99")], unit="s")
    b.ts("Publications per Redis publish call",
         [(f"sum({rate('herald_redis_publish_batch_size_sum')}) / "
           f"sum({rate('herald_redis_publish_batch_size_count')})", "mean"),
          (quantile(0.99, "herald_redis_publish_batch_size"), "p99")],
         description="Publications with history that one call of the publish script stored: "
                     "near 1 while Redis keeps up, growing as publishers outrun it (at most 256).")
    return dashboard("herald-engine", "Herald engine",
                     "Herald's engine: Redis latency and errors, pub/sub, gaps, recovery, nodes.", b)


def nodes():
    b = Board()
    b.ts("CPU by pod", [(f"sum by (pod) ({rate('herald_process_cpu_seconds_total')})", "{{pod}}")],
         unit="percentunit", description="CPU seconds per second (1 = one core).")
    b.ts("Resident memory by pod", [(f"sum by (pod) ({sel('herald_process_resident_memory_bytes')})", "{{pod}}")],
         unit="bytes")
    b.ts("Resident memory per connection",
         [(f"sum by (pod) ({sel('herald_process_resident_memory_bytes')}) / "
           f"(sum by (pod) ({sel('herald_connections')}) > 0)", "{{pod}}")],
         unit="bytes", description="Pods with connections only.")
    b.ts("Open file descriptors vs limit",
         [(f"sum by (pod) ({sel('herald_process_open_fds')})", "open {{pod}}"),
          (f"sum by (pod) ({sel('herald_process_max_fds')})", "max {{pod}}")])
    b.ts("Threads by pod", [(f"sum by (pod) ({sel('herald_process_threads')})", "{{pod}}")])
    b.ts("Connections by pod", [(f"sum by (pod) ({sel('herald_connections')})", "{{pod}}")])
    b.add("table", "Build info", [(f"max by (pod, version, commit) ({sel('herald_build_info')})", "")], w=24,
          transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}])
    return dashboard("herald-nodes", "Herald nodes", "Herald's processes: CPU, memory, file descriptors, builds.", b)


def main():
    boards = {"herald-overview.json": overview(), "herald-engine.json": engine(), "herald-nodes.json": nodes()}
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, board in boards.items():
        text = json.dumps(board, indent=2) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}: {len(board['panels'])} panels")
    if stale:
        sys.exit(f"dashboards differ from scripts/observability/gen-dashboards.py: {stale}; run make dashboards")
    if check:
        print("dashboards match scripts/observability/gen-dashboards.py")


if __name__ == "__main__":
    main()
