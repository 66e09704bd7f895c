# A settings snippet for the azfed test bed's Horizon (openstack_dashboard/local/
# local_settings.d/, executed inside Horizon's settings): gunicorn serves no static files, as
# Apache does in front of Horizon in a cloud, so WhiteNoise serves the files collected at install.
MIDDLEWARE = ("whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE)  # noqa: F821
