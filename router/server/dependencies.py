"""What every route needs first, as FastAPI dependencies: the runtime, one policy snapshot, the caller.

The policy is read once per request: authentication, routing and accounting all see the same
version, even when a hot reload lands halfway through. Identity comes from the API key only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from policies import Policy
from router.auth import Principal, authorization_of
from router.server.runtime import Runtime


# The two below are `async def` though they never await: FastAPI runs a plain `def` dependency in
# its thread pool, two thread hops per request for two attribute reads (7% of the event loop's time
# at 32 concurrent requests, measured with py-spy on bench/proxy/run.py's load).


async def runtime_of(request: Request) -> Runtime:
    """The process's Runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def policy_snapshot(runtime: Annotated[Runtime, Depends(runtime_of)]) -> Policy:
    """The live policy, read once for the whole request."""
    return runtime.store.policy


async def principal_of(
    request: Request,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    policy: Annotated[Policy, Depends(policy_snapshot)],
) -> Principal:
    """The authenticated caller (anonymous when no key is configured), against this request's policy."""
    return await runtime.auth.authenticate(authorization_of(request.headers), policy.config.server)


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
PolicyDep = Annotated[Policy, Depends(policy_snapshot)]
PrincipalDep = Annotated[Principal, Depends(principal_of)]
