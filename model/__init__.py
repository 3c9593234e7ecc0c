"""progressivenn.model"""
