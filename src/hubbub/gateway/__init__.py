"""The asyncio layer: the only code in hubbub that awaits."""
