import predict

# gunicorn serves `wsgi:app`
app = predict.app
