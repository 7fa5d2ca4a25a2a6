"""The web API a worker serves: Segment's Profile API, the audiences and journeys APIs,
health, metrics.

- `routes`: the paths, and `register(app, worker)`, the one call the Faust app makes;
- `views`: the Faust views (request in, response out);
- `profiles`, `audiences`, `journeys`: the answers themselves, pure (no web server, no
  worker);
- `proxy`: what needs the other workers (forwarding to a profile's owner, the fan-out);
- `source`: what the views read from the worker (`WorkerState`) and its adapter;
- `auth`, `errors`: the access-token check and the error shape.
"""
