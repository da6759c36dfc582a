# Drives `codegym serve` as any MCP client does, with the official MCP Python SDK over Streamable
# HTTP: the URL names the configuration (`/mcp?config_id=...`), `initialize` opens a session with
# its episode (the SDK carries its `Mcp-Session-Id` from then on), `tools/list` without a
# selector lists the episode's tools and `tools/call` replays the stored oracle trajectory, the
# last call (Done) with reward 1.
#
# Usage: python mcp_sdk_client.py URL WORKLOAD.json   (workload as openenv_client.py's).
# Prints one JSON summary; exits non-zero on the first mismatch.
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def replay(url, episode):
    async with streamablehttp_client(f"{url}/mcp?config_id={episode['config_id']}") as (read, write, _):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            assert initialized.serverInfo.name == "codegym", initialized
            assert "`Done`" in initialized.instructions, initialized
            listed = await session.list_tools()
            assert [tool.name for tool in listed.tools] == episode["tools"], (listed, episode["tools"])
            for i, action in enumerate(episode["actions"]):
                call = json.loads(action)
                result = await session.call_tool(call["name"], call.get("parameters") or {})
                assert result.isError is False, result
                assert result.content[0].text == episode["observations"][i], (episode["config_id"], i, result)
            assert result.structuredContent["done"] is True and result.structuredContent["reward"] == 1.0, result
            return len(episode["actions"])


async def main():
    url, workload = sys.argv[1], json.load(open(sys.argv[2]))
    steps = [await replay(url, episode) for episode in workload]
    print(json.dumps({"episodes": len(steps), "rewarded": len(steps), "steps": sum(steps)}))


asyncio.run(main())
