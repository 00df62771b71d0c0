"""``hub demo``: a synthetic county community and a month of its traffic, played for real.

- ``names``: Chinese names, resident IDs, phones, regions (pure; shared with the benchmarks).
- ``population``: the residents and their records at each member (pure).
- ``messages`` / ``requests``: HL7 v2 messages and FHIR requests as the members' systems send
  them (pure).
- ``traffic``: the month's events, each with its time and the resident it concerns (pure).
- ``peers``: the members' systems that take what the hub sends (LIS, RIS, HIS, rest-hooks).
- ``play``: sends the events over the hub's MLLP port and FHIR API, in order per resident.
- ``run``: starts the hub (or uses a running one), plays, runs the monthly feedback, reports.
"""
