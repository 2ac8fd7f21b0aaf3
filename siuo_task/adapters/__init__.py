"""Thin translations between harnesses and the siuo_task core."""
