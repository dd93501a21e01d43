"""Robot-arm tasks simulated with PyBullet (imported only when such an env is made, so PyBullet stays optional)."""
