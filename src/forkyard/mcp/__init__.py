"""The MCP server: tools an AI assistant uses to work in Forkyard instances, over stdio
(`forkyard mcp`) or streamable HTTP at /mcp. Every tool calls the platform's own HTTP API with
the caller's key, so authentication, tenancy, scopes and limits stay where the API keeps them."""
