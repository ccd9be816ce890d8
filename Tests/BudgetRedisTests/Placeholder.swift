// Tests arrive with the redis-client branch.
