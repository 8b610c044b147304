"""Every size a user controls, bounded: the limits README "Reliability" states, in one place.

Each is far above what a real input needs and low enough that the refusal comes before memory or
Python's stack runs out. An input beyond one is refused with exit 2, naming the limit.
"""

# A YAML input (scenario, price sheet, bars). A scenario with 10,000 rules is about 0.5 MB, 4 levels deep.
MAX_YAML_BYTES = 16 * 2**20
MAX_YAML_DEPTH = 64  # nested mappings and lists
MAX_YAML_NODES = 1_000_000  # values once every alias is expanded ("billion laughs" files)

# A predicate is a condition a person writes; deeper nesting makes the SQL parser recurse past the stack.
MAX_PREDICATE_CHARS = 10_000
MAX_PREDICATE_NESTING = 32  # levels of parentheses

# Imports.
MAX_COUNT = 1e15  # tokens in one call: far above any context window, and exact in a float
MAX_LINE_BYTES = 16 * 2**20  # one line of a JSON lines export; a longer line is dropped and counted
MAX_ARCHIVE_RATIO = 100  # an archive (inspect-ai .eval) may expand to 100x its size on disk ...
MIN_ARCHIVE_ALLOWANCE = 64 * 2**20  # ... or to 64 MiB, whichever is larger

# A seed is a whole number below 2^63 (a scenario's `sample.seed` too): the keyed draws keep 64 bits of it, so a
# negative or larger seed would silently give another seed's draws.
MAX_SEED = 2**63 - 1

# Analyses: their cost grows linearly with these.
MAX_RESAMPLES = 100_000  # gate --resamples
MAX_SWEEP_POINTS = 100_000  # sweep / whatif --points
MAX_PRICE_FACTOR = 1_000_000  # whatif --scale MODEL=FACTOR: a millionfold price is past any what-if

# Shards: each is a folder of two Parquet files written one after another, so time and inodes grow linearly.
# Generated weeks: the arrival times are drawn up front (about 35 bytes a request at peak) and the files
# take about 70 bytes a request, so 300M requests need about 10 GB of memory and 21 GB of disk.
MAX_GENERATE_REQUESTS = 300_000_000  # routesim generate --requests
MAX_GENERATE_DAYS = 3_660  # routesim generate --days: ten years

MAX_SHARDS = 4_096  # routesim shard --shards; also at most one shard per request
