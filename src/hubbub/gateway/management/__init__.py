"""The management API: AWS ``@connections`` plus hubbub's rooms, users and broadcast.

- ``services.py``: every operation, once (what handlers get as ``context.gateway``);
- ``endpoints.py``: the endpoint table (method and path pattern -> handler function);
- ``api.py``: the HTTP app the management listeners run (errors, auth, rate limit, pages);
- ``inprocess.py``, ``targets.py``, ``botocore_hooks.py``: boto3 calls from this process,
  answered without the network (``[management] in_process``).
"""
