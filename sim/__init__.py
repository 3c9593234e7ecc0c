"""progressivenn.sim"""
