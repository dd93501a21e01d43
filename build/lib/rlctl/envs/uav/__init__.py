"""Quadrotor tasks on PyBullet (Crazyflie 2.x nominal model) and their sim-to-real pieces."""
