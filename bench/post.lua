-- wrk script: POST one canary-shaped event to /api/v1/events.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer dev-token"
wrk.body = '{"kind":"rep_observation","subject_id":"canary-p000001","body":{"session_id":"canary-s-bench-1","rep_number":3,"quality_score":0.81,"confidence_rating":0.95,"duration_ms":3100,"timestamp":"2026-11-24T10:00:00.000Z"},"meta":{"synthetic":true,"phi":false,"consent_id":"canary-consent-000001","therapist_id":"canary-t0001","site_id":"canary","correlation_id":"canary-s-bench-1","source":"rehab-canary"}}'
