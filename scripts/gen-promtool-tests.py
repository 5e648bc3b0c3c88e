#!/usr/bin/env python3
# Writes deploy/prometheus/tests/rehab-canary.test.yml (promtool unit tests).
# The input series and expectations below are the tests, written by hand;
# only the expected annotations are copied from the generated rules, because
# promtool compares them verbatim. Run after changing alert texts:
#   python3 scripts/gen-promtool-tests.py deploy/prometheus/rules/rehab-canary.yml \
#     > deploy/prometheus/tests/rehab-canary.test.yml
import yaml, sys
rules = yaml.safe_load(open(sys.argv[1]))
ann = {}
for g in rules['groups']:
    for r in g['rules']:
        if 'alert' in r:
            ann[r['alert']] = r
J = 'rehab-canary'; I = 'canary-0:8742'
base = f'job="{J}",instance="{I}"'

def s(name, labels, values):
    lab = base + (',' + labels if labels else '')
    return {'series': f'{name}{{{lab}}}', 'values': values}

def exp(alert, labels):
    r = ann[alert]
    import re
    out = []
    for l in labels:
        el = dict(r.get('labels', {}))
        el.update(l)
        a = {}
        for k, v in r['annotations'].items():
            v2 = v
            for lk, lv in el.items():
                v2 = v2.replace('{{ $labels.%s }}' % lk, lv)
            assert '{{' not in v2, (alert, v2)
            a[k] = v2
        out.append({'exp_labels': el, 'exp_annotations': a})
    return out

def case(alert, t, labels):
    return {'eval_time': t, 'alertname': alert, 'exp_alerts': exp(alert, labels)}

tests = []
jl = {'job': J}
# --- SLO burn: availability -------------------------------------------------
avail_bad = [s('rehab_canary_requests_total', 'endpoint="events_create",status="201"', '0+980x80'),
             s('rehab_canary_requests_total', 'endpoint="events_create",status="500"', '0+20x80')]
avail_good = [s('rehab_canary_requests_total', 'endpoint="events_create",status="201"', '0+9995x80'),
              s('rehab_canary_requests_total', 'endpoint="events_create",status="500"', '0+5x80'),
              # Health checks are not user traffic: failing ones do not count.
              s('rehab_canary_requests_total', 'endpoint="health",status="500"', '0+1000x80')]
# A 10-minute spike: the 5m window is hot but the 1h and 6h windows are not.
avail_spike = [s('rehab_canary_requests_total', 'endpoint="events_create",status="201"', '0+1000x60 60000+980x20'),
               s('rehab_canary_requests_total', 'endpoint="events_create",status="500"', '0x60 0+20x20')]
def slo_groups(name, stem, bad, good, extra_good=()):
    lab = [{'job': J, 'slo': name}]
    tests.append({'name': f'{name}: budget burning at 2% / 80% / 50% fires page and ticket',
                  'interval': '1m', 'input_series': bad,
                  'alert_rule_test': [case(f'RehabCanary{stem}FastBurn', '70m', lab),
                                      case(f'RehabCanary{stem}SlowBurn', '70m', lab)]})
    tests.append({'name': f'{name}: within budget fires nothing', 'interval': '1m', 'input_series': good,
                  'alert_rule_test': [case(f'RehabCanary{stem}FastBurn', '70m', []),
                                      case(f'RehabCanary{stem}SlowBurn', '70m', [])]})
    for (desc, series) in extra_good:
        tests.append({'name': f'{name}: {desc}', 'interval': '1m', 'input_series': series,
                      'alert_rule_test': [case(f'RehabCanary{stem}FastBurn', '80m', [])]})
slo_groups('availability', 'Availability', avail_bad, avail_good,
           [('a short spike hot only in the 5m window does not page', avail_spike)])
lat = lambda b, c: [s('rehab_canary_request_duration_seconds_bucket', 'endpoint="events_create",le="0.2"', f'0+{b}x80'),
                    s('rehab_canary_request_duration_seconds_count', 'endpoint="events_create"', f'0+{c}x80')]
slo_groups('latency', 'Latency', lat(20, 100), lat(98, 100) + [
    s('rehab_canary_request_duration_seconds_bucket', 'endpoint="health",le="0.2"', '0x80'),
    s('rehab_canary_request_duration_seconds_count', 'endpoint="health"', '0+100x80')])
lag = lambda b, c: [s('rehab_canary_projection_lag_seconds_bucket', 'projection="stream",le="0.1"', f'0+{b}x80'),
                    s('rehab_canary_projection_lag_seconds_count', 'projection="stream"', f'0+{c}x80')]
slo_groups('projection_lag', 'ProjectionLag', lag(20, 100), lag(98, 100))
batch = lambda b, c: [s('rehab_canary_batch_visible_seconds_bucket', 'projection="stream",le="1.0"', f'0+{b}x80'),
                      s('rehab_canary_batch_visible_seconds_count', 'projection="stream"', f'0+{c}x80')]
slo_groups('batch_latency', 'BatchLatency', batch(20, 100), batch(98, 100))
tp = lambda acc, target, paused, sent=60000, dropped=0: [s('rehab_canary_events_accepted_total', 'kind="session_started"', f'0+{acc}x80'),
                                  s('rehab_canary_events_sent_total', 'kind="session_started"', f'0+{sent}x80'),
                                  s('rehab_canary_iterations_dropped_total', 'reason="max_in_flight"', f'0+{dropped}x80'),
                                  s('rehab_canary_iterations_dropped_total', 'reason="paused"', f'0+{60000 if paused else 0}x80'),
                                  s('rehab_canary_target_events_per_second', '', f'{target}x80'),
                                  s('rehab_canary_paused', '', f'{paused}x80')]
slo_groups('throughput', 'Throughput', tp(30000, 1000, 0, sent=30000, dropped=30000), tp(59900, 1000, 0), [
    ('a canary configured under min_events_per_second is not judged', tp(3000, 200, 0, sent=12000)),
    ('a paused canary is not judged', tp(0, 1000, 1, sent=30000))])

# --- critical levels: firing past critical; quiet between target and critical ---
def critical(stem, fire, fire_labels, quiets, fire_t='15m', pending_t='4m'):
    alert = f'RehabCanary{stem}Critical'
    tests.append({'name': f'{alert}: past the critical level fires after its for, not before', 'interval': '1m',
                  'input_series': fire,
                  'alert_rule_test': [case(alert, pending_t, []), case(alert, fire_t, fire_labels)]})
    for (desc, series) in quiets:
        tests.append({'name': f'{alert}: {desc}', 'interval': '1m', 'input_series': series,
                      'alert_rule_test': [case(alert, fire_t, [])]})
# 2 % errors against the 1 % critical level; 0.5 % is past the 0.1 % target only.
critical('Availability',
         [s('rehab_canary_requests_total', 'endpoint="events_create",status="201"', '0+980x30'),
          s('rehab_canary_requests_total', 'endpoint="events_create",status="500"', '0+20x30')],
         [{'job': J, 'slo': 'availability'}],
         [('0.5 % errors warn but are not critical',
           [s('rehab_canary_requests_total', 'endpoint="events_create",status="201"', '0+995x30'),
            s('rehab_canary_requests_total', 'endpoint="events_create",status="500"', '0+5x30'),
            # Health checks are not user traffic.
            s('rehab_canary_requests_total', 'endpoint="health",status="500"', '0+1000x30')])])
def buckets(name, labels, per_le):
    return [s(f'{name}_bucket', f'{labels},le="{le}"', f'0+{n}x30') for le, n in per_le]
# p95 in (0.5, 1] s against 500 ms; p95 0.425 s is past the 200 ms target only.
critical('Latency',
         buckets('rehab_canary_request_duration_seconds', 'endpoint="events_create"',
                 [('0.2', 50), ('0.5', 80), ('1.0', 100), ('+Inf', 100)]),
         [{'job': J}],
         [('a p95 between target and critical warns but is not critical',
           buckets('rehab_canary_request_duration_seconds', 'endpoint="events_create"',
                   [('0.2', 80), ('0.5', 100), ('1.0', 100), ('+Inf', 100)])
           # Slow health checks are not user traffic.
           + buckets('rehab_canary_request_duration_seconds', 'endpoint="health"',
                     [('0.2', 0), ('0.5', 0), ('1.0', 0), ('+Inf', 100)]))])
# p95 in (1, 2.5] s against 1 s; p95 0.91 s is past the 100 ms target only.
critical('ProjectionLag',
         buckets('rehab_canary_projection_lag_seconds', 'projection="stream"',
                 [('0.1', 50), ('1.0', 80), ('2.5', 100), ('+Inf', 100)]),
         [{'job': J}],
         [('a p95 between target and critical warns but is not critical',
           buckets('rehab_canary_projection_lag_seconds', 'projection="stream"',
                   [('0.1', 50), ('1.0', 100), ('2.5', 100), ('+Inf', 100)]))])
# p95 in (2, 5] s against 2 s; p95 1.9 s is past the 1 s target only.
critical('BatchLatency',
         buckets('rehab_canary_batch_visible_seconds', 'projection="stream"',
                 [('1.0', 50), ('2.0', 80), ('5.0', 100), ('+Inf', 100)]),
         [{'job': J}],
         [('a p95 between target and critical warns but is not critical',
           buckets('rehab_canary_batch_visible_seconds', 'projection="stream"',
                   [('1.0', 50), ('2.0', 100), ('5.0', 100), ('+Inf', 100)]))])
# At least: 400 of 1000 events/s accepted is under the critical 50 %; 700 is
# under the 99 % objective only. Not judged under the floor or while paused.
critical('Throughput', tp(24000, 1000, 0), [{'job': J}],
         [('70 % accepted warns but is not critical', tp(42000, 1000, 0)),
          ('a canary configured under min_events_per_second is not judged', tp(3000, 200, 0, sent=12000)),
          ('a paused canary is not judged', tp(0, 1000, 1, sent=30000))],
         fire_t='25m', pending_t='8m')

# --- canary health -------------------------------------------------------------
il = {'job': J, 'instance': I}
def health(name, alert, series, fire_t, fire_labels, quiet):
    tests.append({'name': f'{alert}: {name}', 'interval': '1m', 'input_series': series,
                  'alert_rule_test': [case(alert, fire_t, fire_labels)] + [case(alert, t, []) for t in quiet]})
def quiet(name, alert, series, times):
    tests.append({'name': f'{alert}: {name}', 'interval': '1m', 'input_series': series,
                  'alert_rule_test': [case(alert, t, []) for t in times]})
health('fires after 2m of failed scrapes', 'RehabCanaryDown',
       [{'series': f'up{{{base}}}', 'values': '1 1 0x10'}], '5m', [il], ['3m'])
quiet('a healthy target or another job never fires', 'RehabCanaryDown',
      [{'series': f'up{{{base}}}', 'values': '1x10'}, {'series': 'up{job="other",instance="x"}', 'values': '0x10'}], ['5m', '10m'])
health('fires when the job has no target', 'RehabCanaryAbsent',
       [{'series': 'up{job="other",instance="x"}', 'values': '1x10'}], '6m', [jl], ['3m'])
quiet('a present target never fires', 'RehabCanaryAbsent', [{'series': f'up{{{base}}}', 'values': '0x10'}], ['6m', '10m'])
# Shard i of tot reports for the first n of 30 minutes, then vanishes.
def shard(i, tot, n, job=J):
    gone = f' _x{30 - n}' if n < 30 else ''
    at = f'job="{job}",instance="canary-{i}:8742"'
    return [{'series': f'rehab_canary_shard_info{{{at},index="{i}",total="{tot}"}}', 'values': f'1x{n}{gone}'},
            {'series': f'rehab_canary_shards_configured{{{at}}}', 'values': f'{tot}x{n}{gone}'}]
health('fires when a shard stops reporting for 10m', 'RehabCanaryShardMissing',
       shard(0, 3, 30) + shard(1, 3, 30) + shard(2, 3, 5), '25m', [jl], ['12m'])
quiet('all shards, or an unsharded canary of another job, never fire', 'RehabCanaryShardMissing',
      shard(0, 3, 30) + shard(1, 3, 30) + shard(2, 3, 30) + shard(0, 1, 30, job='other'), ['20m'])
health('fires after 10m under half the target', 'RehabCanaryUnderTargetRate',
       [s('rehab_canary_events_sent_total', 'kind="session_started"', '0+1200x30'),
        s('rehab_canary_target_events_per_second', '', '50x30'), s('rehab_canary_paused', '', '0x30')],
       '20m', [il], ['5m'])
quiet('not while paused, nor at 80% of the target', 'RehabCanaryUnderTargetRate',
      [s('rehab_canary_events_sent_total', 'kind="session_started"', '0+1200x30'),
       s('rehab_canary_target_events_per_second', '', '50x30'), s('rehab_canary_paused', '', '1x30'),
       {'series': 'rehab_canary_events_sent_total{job="rehab-canary",instance="canary-1:8742",kind="session_started"}', 'values': '0+2400x30'},
       {'series': 'rehab_canary_target_events_per_second{job="rehab-canary",instance="canary-1:8742"}', 'values': '50x30'},
       {'series': 'rehab_canary_paused{job="rehab-canary",instance="canary-1:8742"}', 'values': '0x30'}], ['20m'])
health('fires when the last reload failed', 'RehabCanaryConfigReloadFailed',
       [s('rehab_canary_config_last_reload_successful', '', '1 1 0x5')], '3m', [il], ['1m'])
quiet('a successful reload never fires', 'RehabCanaryConfigReloadFailed',
      [s('rehab_canary_config_last_reload_successful', '', '1x10')], ['5m'])
health('fires after 5m open', 'RehabCanaryCircuitOpen',
       [s('rehab_canary_circuit_open', '', '1x10')], '6m', [il], ['3m'])
quiet('a closed or briefly open circuit never fires', 'RehabCanaryCircuitOpen',
      [s('rehab_canary_circuit_open', '', '0 1 1 1 0 1 1 1 0x5')], ['4m', '8m', '12m'])
health('fires after 2m unhealthy', 'RehabCanaryTargetDown',
       [s('rehab_canary_target_up', '', '1 0x10')], '4m', [il], ['2m'])
quiet('a healthy target never fires', 'RehabCanaryTargetDown', [s('rehab_canary_target_up', '', '1x10')], ['5m'])
health('fires on one lost event', 'RehabCanaryEventsLost',
       [s('rehab_canary_lag_probe_failures_total', 'projection="stream",reason="lost"', '0 0 0 1x10'),
        s('rehab_canary_lag_probe_failures_total', 'projection="adherence",reason="lost"', '0x13')],
       '5m', [{'job': J, 'projection': 'stream'}], ['2m', '14m'])
quiet('late, error and rejected probes are not losses', 'RehabCanaryEventsLost',
      [s('rehab_canary_lag_probe_failures_total', 'projection="stream",reason="late"', '0+1x10'),
       s('rehab_canary_lag_probe_failures_total', 'projection="stream",reason="error"', '0+1x10'),
       s('rehab_canary_lag_probe_failures_total', 'projection="stream",reason="rejected"', '0+1x10'),
       s('rehab_canary_lag_probe_failures_total', 'projection="stream",reason="lost"', '0x10')], ['5m'])
health('fires on one vanished event', 'RehabCanaryReadModelLostEvents',
       [s('rehab_canary_projection_integrity_failures_total', 'projection="stream",reason="vanished"', '0 0 0 1x20'),
        s('rehab_canary_projection_integrity_failures_total', 'projection="adherence",reason="vanished"', '0x23')],
       '10m', [{'job': J, 'projection': 'stream'}], ['2m', '20m'])
quiet('duplicates, checks and unjudged reads are not losses', 'RehabCanaryReadModelLostEvents',
      [s('rehab_canary_projection_integrity_failures_total', 'projection="stream",reason="duplicated"', '0+1x20'),
       s('rehab_canary_projection_integrity_checked_total', 'projection="stream"', '0+20x20'),
       s('rehab_canary_projection_integrity_unjudged_total', 'projection="stream",reason="retention"', '0+5x20'),
       s('rehab_canary_projection_integrity_unjudged_total', 'projection="stream",reason="status"', '0+5x20'),
       s('rehab_canary_projection_integrity_failures_total', 'projection="stream",reason="vanished"', '0x20')], ['5m', '15m'])
health('fires after an hour paused', 'RehabCanaryPausedTooLong',
       [s('rehab_canary_paused', '', '1x70')], '61m', [il], ['30m'])
quiet('a short pause never fires', 'RehabCanaryPausedTooLong', [s('rehab_canary_paused', '', '1x30 0x40')], ['61m'])

# Every alert is covered by a firing and a quiet case.
fired, quieted = set(), set()
for t in tests:
    for c in t['alert_rule_test']:
        (fired if c['exp_alerts'] else quieted).add(c['alertname'])
missing = set(ann) - (fired & quieted)
assert not missing, missing

doc = {'rule_files': ['../rules/rehab-canary.yml'], 'evaluation_interval': '1m', 'tests': tests}
head = ("# promtool unit tests of every alert in ../rules/rehab-canary.yml: for each\n"
        "# alert a case where it fires and one where it must not.\n"
        "# Run: promtool test rules deploy/prometheus/tests/rehab-canary.test.yml\n")
sys.stdout.write(head + yaml.safe_dump(doc, sort_keys=False, width=200))
