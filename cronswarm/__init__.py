"""cronswarm: a distributed crontab.

Masters serve the API and dashboard; workers hold the job table from etcd, claim
each tick with an etcd transaction so exactly one runs it, and record every run
in MongoDB.
"""

__version__ = "0.1.0"
