module github.com/kmskeeper/kmskeeper

go 1.26.0
