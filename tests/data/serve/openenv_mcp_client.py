# Drives `codegym serve` with OpenEnv's own MCP client (MCPToolClient of openenv-core 0.3, which
# steps OpenEnv's list_tools/call_tool actions over WS /ws, or of openenv 0.10, which opens an
# HTTP MCP session, attaches its WebSocket to it and calls tools over POST /mcp): every episode
# of the workload resets, lists the episode's tools, replays its stored oracle trajectory with
# call_tool, seeing the stored observations, and ends with Done and reward 1.
#
# Usage: python openenv_mcp_client.py URL WORKLOAD.json   (workload as openenv_client.py's).
# Prints one JSON summary; exits non-zero on the first mismatch.
import asyncio
import json
import sys

from openenv.core.env_server.mcp_types import CallToolAction
from openenv.core.mcp_client import MCPToolClient


def text_of(result):
    """A tool's text: openenv-core 0.3 hands back the observation's result, openenv 0.10 the MCP
    tools/call result."""
    if isinstance(result, str):
        return result
    assert result["isError"] is False, result
    return result["content"][0]["text"]


async def replay(url, episode):
    async with MCPToolClient(base_url=url) as env:
        reset = await env.reset(config_id=episode["config_id"])
        assert reset.done is False, reset
        tools = await env.list_tools()
        assert [tool.name for tool in tools] == episode["tools"], (tools, episode["tools"])
        assert all(tool.input_schema["type"] == "object" for tool in tools), tools
        *calls, done = [json.loads(action) for action in episode["actions"]]
        for i, call in enumerate(calls):
            got = text_of(await env.call_tool(call["name"], **(call.get("parameters") or {})))
            assert got == episode["observations"][i], (episode["config_id"], i, got)
        # The last call as an action, to read its reward and done.
        result = await env.step(CallToolAction(tool_name=done["name"], arguments=done.get("parameters") or {}))
        assert result.observation.result == episode["observations"][-1], (episode["config_id"], result)
        assert result.done is True and result.reward == 1.0, (episode["config_id"], result)
        return len(episode["actions"])


async def main():
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    gate = asyncio.Semaphore(8)

    async def one(episode):
        async with gate:
            return await replay(url, episode)

    steps = await asyncio.gather(*(one(episode) for episode in workload))
    print(json.dumps({"episodes": len(steps), "rewarded": len(steps), "steps": sum(steps)}))


asyncio.run(main())
