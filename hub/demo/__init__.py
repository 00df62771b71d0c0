"""``hub demo``: a synthetic county community and a month of its traffic, played for real.

Pure (data in, data out; the same seed gives the same bytes):

- ``names``: Chinese names, resident IDs, phones, regions (shared with the benchmarks);
- ``population``: the residents and how each member's records show them;
- ``clinical``: wards, diagnoses, procedures, tests, exams;
- ``messages`` / ``requests``: HL7 v2 messages and FHIR requests as members' systems send them;
- ``events``: the kinds of event; ``month``: the state a month is built on;
- ``hospital``, ``centres``, ``referrals``: their parts of the month; ``traffic``: the plan.

Doing things:

- ``peers``: the members' systems that take what the hub sends (LIS, RIS, HIS, rest-hooks);
- ``access``: who the demo speaks as (tokens from the store), Endpoints, Subscriptions;
- ``play``: sends the events over the hub's MLLP port and FHIR API, in order per resident;
- ``report``: waits for the hub, runs the monthly feedback, reads back the figures;
- ``run``: starts the hub (or uses a running one) and does all of it.
"""
