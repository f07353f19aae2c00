module heroes-auth

go 1.26
