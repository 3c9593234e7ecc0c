"""progressivenn.hw"""
