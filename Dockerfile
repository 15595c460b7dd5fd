FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=settings.prod
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends gettext curl pgbouncer && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir -e .
COPY . .
# collectstatic uses no database; the placeholder DATABASE_URL keeps the embedded default from starting one in the image.
RUN SECRET_KEY=build FIELD_ENCRYPTION_KEY=build FINGERPRINT_KEY=build ALLOWED_HOSTS=* \
    DATABASE_URL=postgres://build@localhost/build python manage.py collectstatic --noinput
RUN useradd --create-home mengka && mkdir -p /app/var/simulator /app/var/ledger-seals && chown -R mengka /app/var
USER mengka
EXPOSE 8000
CMD ["gunicorn", "settings.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
